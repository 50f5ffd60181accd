"""The one command-line convention of every entry point (train.py, sample.py, `python -m dreamactor_jax.*`,
benchmarks/): absl flags, an ml_collections `--config` file, `--help`, and one error path.

A tool defines its flags in a `FlagValues` of its own (so tools imported side by side, as tests do, never
collide), and its `main(argv)` is `cli.run(body, FLAGS, argv, doc=__doc__)`:

    FLAGS = flags.FlagValues()
    _CONFIG = cli.define_config(FLAGS, "dreamactor_jax/configs/base.py", "what its sections mean here")
    _OUT = flags.DEFINE_string("out", None, "where the result goes", flag_values=FLAGS, required=True)

A tool with sub-commands (`convert dit`, `benchmarks/vae.py speed`) gives each its own `FlagValues` and
body, and its `main(argv)` is `cli.run_command(COMMANDS, argv, program=..., doc=__doc__)`.

- `--help` prints the tool's docstring and every flag with its help and default; a tool with
  sub-commands lists them, and `<command> --help` shows that command's flags.
- `--config=<file>[:<arg>]` picks the config; `--config.<section>.<field>=<value>` overrides one field.
- Every expected failure (a bad flag, a missing or unreadable file, a ValueError raised at the edge, which
  our MediaError, BundleError, CheckpointError, DataError and TrainingError are) prints one line
  `error: <file/flag/key>: <what was expected>` on stderr and exits with status 2, no traceback.
  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from absl import flags
from ml_collections import config_flags

USAGE_STATUS = 2
EXPECTED_ERRORS = (ValueError, OSError, KeyError, flags.Error)


class UsageError(ValueError):
  """A command line that cannot run: an unexpected argument, or flags that contradict each other."""


def define_config(flag_values: flags.FlagValues, default: str, help_string: str) -> flags.FlagHolder:
  """`--config=<file>[:<arg>]`, a `get_config()` Python file, with `--config.<a>.<b>=<value>` overrides."""
  with _argv(sys.argv[:1]):  # the default loads now: without this command line's overrides, which `run` applies
    return config_flags.DEFINE_config_file(
        "config", default, f"{help_string} Override any field as --config.<section>.<field>=<value>.",
        flag_values=flag_values)


def config_overrides(flag_values: flags.FlagValues) -> dict:
  """The `--config.*` overrides given on the command line, `{"sampling.shift": 5.0, ...}`."""
  return config_flags.get_override_values(flag_values["config"])


class Size(NamedTuple):
  """A frame size that prints as it is typed, `480x832`."""

  height: int
  width: int

  def __str__(self) -> str:
    return f"{self.height}x{self.width}"


def parse_size(text: str) -> Size:
  """"480x832" -> Size(480, 832), height x width, each a positive integer."""
  parts = text.lower().split("x")
  if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
    raise ValueError("expected HxW, two positive integers, e.g. 480x832")
  return Size(int(parts[0]), int(parts[1]))


def define_size(name: str, default: str | None, help_string: str, flag_values: flags.FlagValues) -> flags.FlagHolder:
  """A `HxW` flag whose value is a `Size` (or None); a malformed one fails while flags are read."""
  return _define_parsed(name, default, help_string, parse_size, flag_values)


def option(default: Any = dataclasses.MISSING, *, help: str, parse: Callable[[str], Any] | None = None,
           **field_kwargs) -> Any:
  """A dataclass field that is also a command-line flag (`define_options`): its help, and for a type
  without a flag of its own, the `parse(text)` that reads it."""
  metadata = {"help": help, "parse": parse}
  if default is dataclasses.MISSING:
    return dataclasses.field(metadata=metadata, **field_kwargs)
  return dataclasses.field(default=default, metadata=metadata, **field_kwargs)


def define_options(options_class: type, flag_values: flags.FlagValues) -> None:
  """One flag per field of the dataclass `options_class` made with `option(...)`, named as the field
  with dashes (`pairs_per_clip` -> `--pairs-per-clip`), typed by its annotation, so each option is
  written once. Required fields get a default of None; `options_from_flags` refuses them missing."""
  hints = typing.get_type_hints(options_class)
  for field in dataclasses.fields(options_class):
    if "help" not in field.metadata:
      continue
    name, kind = field.name.replace("_", "-"), _base_type(hints[field.name])
    default = None if field.default is dataclasses.MISSING else field.default
    if field.default_factory is not dataclasses.MISSING:
      default = None
    common = dict(flag_values=flag_values)
    if field.metadata["parse"] is not None:
      _define_parsed(name, default, field.metadata["help"], field.metadata["parse"], flag_values)
    elif typing.get_origin(kind) is typing.Literal:
      flags.DEFINE_enum(name, default, [str(v) for v in typing.get_args(kind)], field.metadata["help"], **common)
    elif kind is bool:
      flags.DEFINE_bool(name, default, field.metadata["help"], **common)
    elif kind is int:
      flags.DEFINE_integer(name, default, field.metadata["help"], **common)
    elif kind is float:
      flags.DEFINE_float(name, default, field.metadata["help"], **common)
    elif kind is str:
      flags.DEFINE_string(name, default, field.metadata["help"], **common)
    else:
      raise TypeError(f"{options_class.__name__}.{field.name}: give option(parse=...) for type {kind}")


def options_from_flags(options_class: type, flag_values: flags.FlagValues, **values) -> Any:
  """The `options_class` instance the parsed flags describe (`values` fill or replace fields)."""
  for field in dataclasses.fields(options_class):
    if "help" not in field.metadata or field.name in values:
      continue
    value = flag_values[field.name.replace("_", "-")].value
    if value is None and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
      raise UsageError(f"--{field.name.replace('_', '-')}: required")
    if value is not None or field.default_factory is dataclasses.MISSING:
      values[field.name] = value
  return options_class(**values)


def _base_type(hint: Any) -> Any:
  """`int | None` -> int; other hints as they are."""
  args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
  return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def _define_parsed(name: str, default: Any, help_string: str, parse: Callable[[str], Any],
                   flag_values: flags.FlagValues) -> flags.FlagHolder:
  """A flag read by `parse(text)`; its ValueError fails while flags are read."""

  class Parser(flags.ArgumentParser):
    def parse(self, argument):
      return parse(argument) if isinstance(argument, str) else argument

  return flags.DEFINE(Parser(), name, default, help_string, flag_values=flag_values,
                      serializer=flags.ArgumentSerializer())


def namespace(flag_values: flags.FlagValues) -> types.SimpleNamespace:
  """The parsed flags as attributes, dashes as underscores (`--batch-size` -> `.batch_size`)."""
  return types.SimpleNamespace(**{name.replace("-", "_"): flag_values[name].value for name in flag_values})


def require(flag_values: flags.FlagValues, name: str, check: Callable, expected: str) -> None:
  """Registers `check(value)` on `--name` (skipped while it is None): False fails as `--name=v: expected`."""
  flags.register_validator(name, lambda value: value is None or bool(check(value)), message=expected,
                           flag_values=flag_values)


def finite(value: float) -> bool:
  return math.isfinite(value)


def _with_config(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
  """`argv` with `--config` given (its default when absent), the `--config.*` flags of an earlier parse
  removed: config_flags defines those flags, into the config it loads, when it parses `--config`."""
  if "config" not in flag_values:
    return argv
  for name in [name for name in flag_values if name.startswith("config.")]:
    delattr(flag_values, name)
  if any(re.match(r"-{1,2}config(=|$)", arg) for arg in argv[1:]):
    return argv
  return [argv[0], f"--config={flag_values['config'].default_unparsed}", *argv[1:]]


def _override_naming(argv: list[str], field: str) -> str:
  """The `--config.a.b` argument whose path holds `field`."""
  names = [arg.split("=")[0] for arg in argv if arg.startswith("--config.")]
  return next((name for name in names if field in name.split(".")), "--config.*")


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
  """config_flags reads `--config.*` overrides from sys.argv, so it holds this tool's command line."""
  saved = sys.argv
  sys.argv = argv
  try:
    yield
  finally:
    sys.argv = saved


def help_text(flag_values: flags.FlagValues, doc: str | None) -> str:
  """The tool's docstring, then every flag with its help and default in one list."""
  listing = flag_values.get_help(include_special_flags=False).splitlines()
  flag_lines = [line for line in listing if line.startswith(" ")]  # not absl's per-module headings
  return "\n".join([(doc or "").strip(), "", "Flags:", *flag_lines,
                    "  --[no]help: Shows this help and exits (also -h, --helpshort, --helpfull)."])


def error_line(error: BaseException) -> str:
  """`error: <what>: <expected>` for an expected failure, from the exception's own message."""
  if isinstance(error, OSError) and error.filename is not None:
    return f"error: {error.filename}: {error.strerror or error}"
  message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in message.removeprefix("flag ").splitlines() if line.strip()]  # absl: "flag --x"
  if len(lines) > 1:  # a config file that failed to load: its flag, then the last line of its traceback
    flag = re.match(r"--[\w.]+(=\S*)?", lines[0])
    return f"error: {flag[0].rstrip(':') if flag else '--config'}: {lines[-1]}"
  return f"error: {lines[0] if lines else type(error).__name__}"


def fail(error: BaseException) -> int:
  print(error_line(error), file=sys.stderr)
  return USAGE_STATUS


def run(body: Callable[[], object], flag_values: flags.FlagValues, argv: list[str] | None = None, *,
        doc: str | None) -> int:
  """Parses `argv` (default: the process's) into `flag_values`, then runs `body()`; returns the exit
  status: 0, or 2 after printing one error line. `body` may return an int status of its own."""
  program = sys.argv[0]
  argv = [program, *(sys.argv[1:] if argv is None else argv)]
  if any(arg in ("--help", "-h", "--helpshort", "--helpfull") for arg in argv[1:]):
    print(help_text(flag_values, doc))
    return 0
  _quiet_libraries()
  flag_values.unparse_flags()
  argv = _with_config(flag_values, argv)
  with _argv(argv):
    try:
      rest = flag_values(argv)
      if "config" in flag_values:
        flag_values["config"].value.get("stage")  # a config file that failed to load raises here, not mid-run
      if len(rest) > 1:
        raise UsageError(f"{' '.join(rest[1:])}: unexpected arguments; every input is a --flag (see --help)")
    except EXPECTED_ERRORS as e:
      return fail(e)
    except AttributeError as e:  # ml_collections' word for an override of a field the config lacks
      field = str(e).strip("\"'")
      return fail(UsageError(f"{_override_naming(argv, field)}: the config has no such field"))
  try:
    status = body()
  except EXPECTED_ERRORS as e:
    return fail(e)
  return status if isinstance(status, int) else 0


@dataclasses.dataclass(frozen=True)
class Command:
  """One sub-command of a tool: what it does (one line), its own flags, and the body that runs it."""

  summary: str
  flag_values: flags.FlagValues
  body: Callable[[], object]


def run_command(commands: Mapping[str, Command], argv: list[str] | None = None, *, program: str,
                doc: str | None) -> int:
  """Runs the sub-command named by `argv[0]` (default: the process's arguments) as `run` runs a tool;
  `--help` alone lists the commands. Returns the exit status (2 after one error line)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  name = argv[0] if argv else None
  if name in commands:
    command = commands[name]
    return run(command.body, command.flag_values, argv[1:],
               doc=f"{program} {name}: {command.summary}\n\n{(doc or '').strip()}")
  if name in ("--help", "-h", "--helpshort", "--helpfull"):
    listing = "\n".join(f"  {key}: {command.summary}" for key, command in commands.items())
    print(f"{(doc or '').strip()}\n\nCommands (each with --help):\n{listing}")
    return 0
  return fail(UsageError(f"{name or '<command>'}: expected a command, one of {', '.join(commands)}"))


def _quiet_libraries() -> None:
  """Our progress at INFO on stderr, other libraries from WARNING. Orbax and Grain log through absl and
  narrate every save and read, and every failure once per thread before raising it: the raised error
  becomes our one line, so absl's records are dropped. (absl's own handler would complain that the
  global FLAGS are unparsed.)"""
  logging.basicConfig(format="%(levelname).1s %(asctime)s %(name)s] %(message)s")
  logging.getLogger().setLevel(logging.WARNING)
  logging.getLogger("absl").setLevel(logging.CRITICAL)
  logging.getLogger("dreamactor_jax").setLevel(logging.INFO)
