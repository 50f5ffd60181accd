"""The one command-line convention (dreamactor_jax/cli.py) and train.py's use of it: --help, --config.*
overrides, and every expected failure as one `error:` line with exit status 2."""

import importlib
import re
from pathlib import Path

import pytest
from absl import flags

import train
from dreamactor_jax import cli

DOC = """A tool that reads a frame size and a count."""


def make_tool(body):
  values = flags.FlagValues()
  config = cli.define_config(values, "dreamactor_jax/configs/base.py", "The config.")
  size = cli.define_size("size", None, "Frame size HxW.", values)
  count = flags.DEFINE_integer("count", 1, "How many.", lower_bound=1, flag_values=values)
  rate = flags.DEFINE_float("rate", None, "A rate.", flag_values=values)
  cli.require(values, "rate", cli.finite, "expected a finite number")
  return lambda argv: cli.run(lambda: body(config, size, count, rate), values, argv, doc=DOC)


def one_error_line(capsys) -> str:
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  return lines[0]


def test_flags_and_config_overrides_reach_the_body(capsys):
  seen = {}

  def body(config, size, count, rate):
    seen.update(shift=config.value.sampling.shift, size=size.value, count=count.value, rate=rate.value)

  tool = make_tool(body)
  assert tool(["--size=48x80", "--count=3", "--config.sampling.shift=7.5"]) == 0
  assert seen == dict(shift=7.5, size=(48, 80), count=3, rate=None)
  assert tool([]) == 0 and seen["shift"] != 7.5 and seen["size"] is None  # a second run starts from the defaults


def test_help_lists_every_flag(capsys):
  assert make_tool(lambda *_: None)(["--help"]) == 0
  text = capsys.readouterr().out
  assert text.startswith(DOC)
  for flag in ("--config:", "--size:", "--count:", "--rate:"):
    assert flag in text
  assert "--config.<section>.<field>=<value>" in text


@pytest.mark.parametrize("argv, message", [
    (["--size=48by80"], "--size=48by80: expected HxW, two positive integers"),
    (["--count=0"], "--count=0: 0 is not a positive integer"),
    (["--rate=nan"], "--rate=nan: expected a finite number"),
    (["--colour=red"], "Unknown command line flag 'colour'"),
    (["--config.sampling.nope=1"], "--config.sampling.nope: the config has no such field"),
    (["--config.sampling.shift=abc"], "--config.sampling.shift=abc: could not convert string to float"),
    (["--config=dreamactor_jax/configs/stage1.py:huge"],
     "--config=dreamactor_jax/configs/stage1.py:huge: ValueError: unknown size 'huge'"),
    (["--config=missing.py"], r"--config: \[Errno 2\] No such file or directory: 'missing.py'"),
    (["stray"], "stray: unexpected arguments"),
])
def test_bad_command_lines_are_one_line(argv, message, capsys):
  assert make_tool(lambda *_: pytest.fail("ran"))(argv) == 2
  assert re.search(message, one_error_line(capsys))


@pytest.mark.parametrize("error, message", [
    (FileNotFoundError(2, "No such file or directory", "/x/y.mp4"), "error: /x/y.mp4: No such file or directory"),
    (ValueError("data.buckets: expected (H, W) pairs"), "error: data.buckets: expected (H, W) pairs"),
    (KeyError("prompt 'a cat' is not in prompts.safetensors"), "error: prompt 'a cat' is not in prompts.safetensors"),
])
def test_expected_failures_in_the_body_are_one_line(error, message, capsys):
  def body(*_):
    raise error

  assert make_tool(body)([]) == 2
  assert one_error_line(capsys) == message


def test_a_bug_keeps_its_traceback():
  def body(*_):
    raise ZeroDivisionError("a bug")

  with pytest.raises(ZeroDivisionError):
    make_tool(body)([])


@pytest.mark.parametrize("override, message", [
    ("--config.checkpoint.every=0", r"config.checkpoint.every=0: expected an integer >= 1"),
    ("--config.train.steps=-3", r"config.train.steps=-3: expected an integer >= 1"),
    ("--config.train.text_dropout=1.5", r"config.train.text_dropout=1.5: expected a share in \[0, 1\]"),
    ("--config.stage=3", "config.stage=3; expected 1"),
    ("--config.init.vae=", "config.init.vae is empty"),
    ("--config.init.vae=/nonexistent/vae", "/nonexistent/vae"),
])
def test_train_refuses_bad_settings_in_one_line(override, message, tmp_path, capsys):
  assert train.main([f"--workdir={tmp_path / 'run'}", "--config=dreamactor_jax/configs/stage1.py:tiny", override]) == 2
  assert re.search(message, one_error_line(capsys))


def test_train_requires_a_workdir(capsys):
  assert train.main([]) == 2
  assert "--workdir" in one_error_line(capsys)


def test_train_refuses_a_checkpoint_folder_it_cannot_write(tmp_path, capsys):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").symlink_to("/proc/1")  # unwritable even for root
  assert train.main([f"--workdir={tmp_path / 'run'}", "--config=dreamactor_jax/configs/stage1.py:tiny"]) == 2
  assert one_error_line(capsys) == (f"error: {tmp_path / 'run' / 'checkpoints'}: cannot write checkpoints here "
                                    "(No such file or directory)")


def make_commands(seen):
  def command(name):
    values = flags.FlagValues()
    count = flags.DEFINE_integer("count", 1, "How many.", lower_bound=1, flag_values=values)
    return cli.Command(f"the {name} command", values, lambda: seen.update({name: count.value}))

  return {"first": command("first"), "second": command("second")}


def test_sub_commands_each_parse_their_own_flags(capsys):
  seen = {}
  commands = make_commands(seen)
  assert cli.run_command(commands, ["second", "--count=4"], program="python tool.py", doc=DOC) == 0
  assert seen == {"second": 4}
  assert cli.run_command(commands, ["--help"], program="python tool.py", doc=DOC) == 0
  listing = capsys.readouterr().out
  assert listing.startswith(DOC) and "\n  first: the first command\n" in listing
  assert cli.run_command(commands, ["first", "--help"], program="python tool.py", doc=DOC) == 0
  assert capsys.readouterr().out.startswith("python tool.py first: the first command")


@pytest.mark.parametrize("argv, message", [
    ([], "error: <command>: expected a command, one of first, second"),
    (["third"], "error: third: expected a command, one of first, second"),
    (["first", "--count=0"], "error: --count=0: 0 is not a positive integer"),
])
def test_sub_command_failures_are_one_line(argv, message, capsys):
  assert cli.run_command(make_commands({}), argv, program="python tool.py", doc=DOC) == 2
  assert one_error_line(capsys) == message


BENCHMARKS = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_is_on_the_convention(name, capsys):
  """--help lists its flags (a tool with sub-commands: its commands); a bad flag is one line and exit 2."""
  tool = importlib.import_module(f"benchmarks.{name}")
  assert tool.main(["--help"]) == 0
  assert capsys.readouterr().out.startswith(tool.__doc__.strip().splitlines()[0])
  command = [next(iter(tool.COMMANDS))] if hasattr(tool, "COMMANDS") else []
  assert tool.main([*command, "--no-such-flag=1"]) == 2
  assert "Unknown command line flag 'no-such-flag'" in one_error_line(capsys)
