"""The docs cannot rot silently: their commands, snippets and links are checked against the code.

Every command in README.md and docs/*.md that runs a project entry point (`sample.py`, `train.py`,
`benchmarks/*.py`, `python -m dreamactor_jax...`), in a fenced bash block or an inline code span, has
each flag checked against the flags that entry point defines: its `--help` output, read once per entry
point and sub-command from its `main` in this process (every tool keeps its flags in a `FlagValues` of
its own, so tools imported side by side never collide; no interpreter start per tool). `--config.a.b` overrides
are checked against the config file the command loads (its `--config=path:arg`, else the entry point's
default). Nothing is sampled or trained. Fenced python snippets must parse; what they import must exist,
attributes they read off imported names must exist, and keyword arguments they pass to the package's
functions must be in those functions' signatures. Relative links must reach a file (and heading).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`(python3? [^`]+)`(?!`)")
SEPARATORS = {"&&", "||", ";", "|"}
# Flag definitions start a line indented by two spaces, `  --[no]name: text`; their descriptions continue deeper.
ABSL_FLAG = re.compile(r"^  (?:-\S,)?--(\[no\])?([\w.-]+):", re.MULTILINE)
CONFIG_DEFAULT = re.compile(r"^  --config:[^\n]*(?:\n    [^\n]*)*?\(default: '([^']*)'\)", re.MULTILINE)


@dataclass(frozen=True)
class Command:
  """One entry-point invocation found in a page: where, what runs, and its argument tokens."""
  page: str
  line: int
  entry: tuple[str, ...]  # ("sample.py",) or ("-m", "dreamactor_jax.convert")
  args: tuple[str, ...]

  @property
  def subcommand(self) -> str | None:
    first = next((a for a in self.args if a not in ("...",)), None)
    return first if first is not None and re.fullmatch(r"[a-z][\w-]*", first) else None

  def __str__(self) -> str:
    return f"{self.page}:{self.line}: {' '.join(self.entry + self.args)}"


def fenced_blocks(page: Path) -> list[tuple[str, int, str]]:
  """(language, first line number, body) of every fenced block of a page."""
  text = page.read_text()
  return [(m.group(1), text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in FENCE.finditer(text)]


def entry_of(tokens: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
  """The entry point a shell command runs and the tokens after it, or None for other programs."""
  for i, token in enumerate(tokens):
    if token == "-m" and i + 1 < len(tokens) and tokens[i + 1].startswith("dreamactor_jax"):
      return ("-m", tokens[i + 1]), tokens[i + 2:]
    if token in ("sample.py", "train.py") or re.fullmatch(r"benchmarks/\w+\.py", token):
      if i > 0 and re.search(r"python3?$", tokens[i - 1]):
        return (token,), tokens[i + 1:]
  return None


def commands_in(text: str, page: str, line: int) -> list[Command]:
  """Entry-point commands in shell text, including those quoted inside another command (ssh --command=)."""
  found = []
  lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=";&|")
  lexer.whitespace_split = True
  lexer.commenters = "#"
  try:
    tokens = list(lexer)
  except ValueError as e:
    raise AssertionError(f"{page}:{line}: not valid shell: {e}") from None
  segment: list[str] = []
  for token in tokens + [";"]:
    if token in SEPARATORS or set(token) <= set(";&|"):
      hit = entry_of(segment)
      if hit:
        found.append(Command(page, line, hit[0], tuple(a.strip("[]") for a in hit[1])))
      segment = []
      continue
    segment.append(token)
    if " " in token or token.startswith("--command="):  # a quoted command line: read it too
      found += commands_in(token.split("=", 1)[1] if token.startswith("--command=") else token, page, line)
  return found


def doc_commands() -> list[Command]:
  """Every entry-point command of every page: fenced bash blocks (line by line) and inline code spans."""
  commands = []
  for page in PAGES:
    name = str(page.relative_to(ROOT))
    for language, start, body in fenced_blocks(page):
      if language in ("bash", "sh", "shell"):
        lines = body.replace("\\\n", " \\\n").split("\n")
        joined, first = "", start
        for offset, text in enumerate(lines):
          if not joined:
            first = start + offset
          joined += text + "\n"
          if not text.rstrip().endswith("\\"):
            commands += commands_in(joined, name, first)
            joined = ""
    text = page.read_text()
    outside_fences = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in INLINE.finditer(outside_fences):
      commands += commands_in(m.group(1), name, text.count("\n", 0, m.start()) + 1)
  return commands


@functools.cache
def entry_module(entry: tuple[str, ...]):
  """The module an entry point runs: `-m pkg.tool` (a package: its `__main__`), or a script by its path
  (imported, not run: every entry point runs only under `if __name__ == "__main__"`)."""
  if entry[0] == "-m":
    name = entry[1]
    if importlib.util.find_spec(name).submodule_search_locations is not None:
      name += ".__main__"
    return importlib.import_module(name)
  path = ROOT / entry[0]
  spec = importlib.util.spec_from_file_location(f"_doc_entry_{path.stem}", path)
  module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look themselves up
  spec.loader.exec_module(module)
  return module


@functools.cache
def help_text(entry: tuple[str, ...], subcommand: str | None) -> str:
  """What `<entry> [<subcommand>] --help` prints: the tool's docstring and every flag it defines."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = entry_module(entry).main([*([subcommand] if subcommand else []), "--help"])
  assert status == 0, f"{' '.join(entry)} {subcommand or ''} --help failed (exit {status}): {err.getvalue()[-600:]}"
  return out.getvalue()


@functools.cache
def defined_flags(entry: tuple[str, ...], subcommand: str | None) -> frozenset[str]:
  """Flag names an entry point accepts; absl booleans also as `no<name>`."""
  text = help_text(entry, subcommand)
  names = set()
  for negatable, name in ABSL_FLAG.findall(text):
    names.add(name)
    if negatable:
      names.add("no" + name)
  return frozenset(names | {"help"})  # every entry point takes --help, listed or not


def load_config(spec: str):
  """The ConfigDict of `path.py[:arg]`, as config_flags builds it."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location(f"_doc_config_{abs(hash(path))}", ROOT / path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def config_has(config, dotted: str) -> bool:
  node = config
  for key in dotted.split("."):
    try:
      if key not in node:
        return False
    except TypeError:  # a leaf value: nothing below it
      return False
    node = node[key]
  return True


def entry_exists(entry: tuple[str, ...]) -> bool:
  """The entry point is this tree's own file (an editable install elsewhere could still import a module
  deleted here)."""
  script = ROOT / (entry[1].replace(".", "/") if entry[0] == "-m" else entry[0])
  return any(path.is_file() for path in (script.with_suffix(".py"), script / "__main__.py", script))


def flag_problems(command: Command) -> list[str]:
  """What in one command does not match the entry point's flags (empty when it all does)."""
  if not entry_exists(command.entry):
    return [f"{' '.join(command.entry)}: no such entry point in this tree"]
  if not command.args:
    return []
  flags = defined_flags(command.entry, command.subcommand)
  problems, config_spec = [], None
  text = help_text(command.entry, command.subcommand)
  if command.subcommand and ABSL_FLAG.search(text) and not re.search(
      rf"{re.escape(command.entry[-1])}\s+{re.escape(command.subcommand)}\b", text):
    # absl tools take every input as a --flag; a sub-command must be one their own help shows
    problems.append(f"{command.subcommand}: {command.entry[-1]} shows no such sub-command in its --help")
  options = [a for a in command.args if re.match(r"--?[a-zA-Z]", a)]
  for option in options:
    name = option.lstrip("-").split("=", 1)[0]
    if name == "config" and "=" in option:
      config_spec = option.split("=", 1)[1]
  for option in options:
    name = option.lstrip("-").split("=", 1)[0]
    if name.startswith("config."):
      if "config" not in flags:
        problems.append(f"{option}: the entry point has no --config")
        continue
      if config_spec is None:
        default = CONFIG_DEFAULT.search(help_text(command.entry, command.subcommand))
        assert default, f"{command}: --config has no default; give --config= in the command"
        config_spec = str(Path(default.group(1)).relative_to(ROOT) if Path(default.group(1)).is_absolute()
                          else default.group(1))
      if not config_has(load_config(config_spec), name.removeprefix("config.")):
        problems.append(f"{option}: no field {name.removeprefix('config.')} in {config_spec}")
    elif name not in flags:
      problems.append(f"{option}: not a flag of {' '.join(command.entry)} {command.subcommand or ''}".rstrip())
  return problems


COMMANDS = doc_commands()
ENTRIES = sorted({(c.entry, c.subcommand) for c in COMMANDS}, key=lambda e: (e[0], e[1] or ""))


def test_pages_have_commands():
  """The extractor finds the documented commands (a broken regex must not make every check vacuous)."""
  entries = {" ".join(c.entry) for c in COMMANDS}
  assert {"sample.py", "train.py", "-m dreamactor_jax.convert"} <= entries, sorted(entries)


@pytest.mark.parametrize("entry", ENTRIES, ids=str)
def test_command_flags_exist(entry):
  """Each documented command of this entry point uses only flags (and config fields) that exist."""
  problems = [f"{c}\n    {p}" for c in COMMANDS if (c.entry, c.subcommand) == entry for p in flag_problems(c)]
  assert not problems, "documented flags that do not exist:\n" + "\n".join(problems)


def test_fences_are_closed_and_commands_tagged():
  """An unclosed fence swallows the page after it; a command in a fence without a language would
  escape the flag check (tag it bash)."""
  unclosed = [page.name for page in PAGES if len(re.findall(r"^```", page.read_text(), re.MULTILINE)) % 2]
  assert not unclosed, f"pages with an unclosed ``` fence: {unclosed}"
  untagged = [f"{page.name}:{start}" for page in PAGES for language, start, body in fenced_blocks(page)
              if not language and re.search(r"^\s*(\S*/)?python3? \S", body, re.MULTILINE)]
  assert not untagged, f"fenced blocks with commands but no `bash` tag: {untagged}"


def python_blocks() -> list[tuple[str, list[tuple[int, str]]]]:
  """Per page, its fenced python snippets (line, source) in order: a page's snippets share their imports."""
  pages = []
  for page in PAGES:
    blocks = [(start, body) for language, start, body in fenced_blocks(page) if language == "python"]
    if blocks:
      pages.append((str(page.relative_to(ROOT)), blocks))
  return pages


def resolve(node: ast.AST, names: dict) -> object:
  """The object an expression of names and attributes refers to, or None when it is not an imported name."""
  if isinstance(node, ast.Name):
    return names.get(node.id)
  if isinstance(node, ast.Attribute):
    base = resolve(node.value, names)
    if base is not None and is_ours(base):
      if not hasattr(base, node.attr):
        raise AttributeError(f"{getattr(base, '__name__', base)} has no attribute {node.attr}")
      return getattr(base, node.attr)
  return None


def is_ours(obj: object) -> bool:
  module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "") or ""
  return module.split(".")[0] == "dreamactor_jax"


def snippet_problems(source: str, names: dict) -> list[str]:
  """Import what a snippet imports (into `names`); report missing names, attributes and keyword arguments."""
  tree = ast.parse(source)
  problems = []
  for node in ast.walk(tree):
    try:
      if isinstance(node, ast.Import):
        for alias in node.names:
          module = importlib.import_module(alias.name)
          names[alias.asname or alias.name.split(".")[0]] = (
              module if alias.asname else importlib.import_module(alias.name.split(".")[0]))
      elif isinstance(node, ast.ImportFrom):
        module = importlib.import_module(node.module)
        for alias in node.names:
          if not hasattr(module, alias.name):
            importlib.import_module(f"{node.module}.{alias.name}")  # a submodule
          names[alias.asname or alias.name] = getattr(module, alias.name)
    except (ImportError, AttributeError) as e:
      problems.append(f"line {node.lineno}: {e}")
  for node in ast.walk(tree):
    try:
      target = resolve(node.func if isinstance(node, ast.Call) else node, names)
    except AttributeError as e:
      problems.append(f"line {node.lineno}: {e}")
      continue
    if isinstance(node, ast.Call) and target is not None and callable(target) and is_ours(target):
      try:
        parameters = inspect.signature(target).parameters
      except (TypeError, ValueError):
        continue
      if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        continue
      for keyword in node.keywords:
        if keyword.arg is not None and keyword.arg not in parameters:
          problems.append(f"line {node.lineno}: {target.__qualname__}() has no argument {keyword.arg}")
  return problems


@pytest.mark.parametrize("page, blocks", python_blocks(), ids=[p for p, _ in python_blocks()])
def test_python_snippets_name_what_exists(page, blocks):
  names: dict = {}
  problems = []
  for start, body in blocks:
    try:
      problems += [f"{page}:{start}: {p}" for p in snippet_problems(body, names)]
    except SyntaxError as e:
      problems.append(f"{page}:{start + (e.lineno or 1) - 1}: not valid Python: {e.msg}")
  assert not problems, "\n".join(problems)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(page: Path) -> set[str]:
  """GitHub's anchors of a page's headings."""
  text = FENCE.sub("", page.read_text())
  anchors = set()
  for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
    anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
  return anchors


def test_relative_links_resolve():
  broken = []
  for page in PAGES:
    for target in LINK.findall(FENCE.sub("", page.read_text())):
      if re.match(r"[a-z]+:", target):
        continue
      path, _, anchor = target.partition("#")
      file = (page.parent / path).resolve() if path else page
      if not file.exists():
        broken.append(f"{page.name}: {target} (no such file)")
      elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file):
        broken.append(f"{page.name}: {target} (no such heading)")
  assert not broken, broken


def test_readme_is_a_front_page():
  """README stays short, and its test command is exactly what CI runs."""
  readme = (ROOT / "README.md").read_text()
  assert len(readme.splitlines()) <= 160, "README.md is a front page: move detail into docs/"
  bash = [body.strip() for language, _, body in fenced_blocks(ROOT / "README.md") if language == "bash"]
  ci_lines = (ROOT / ".ci/run").read_text().splitlines()
  assert any(block in ci_lines for block in bash), "README's test command is not the line .ci/run runs"
