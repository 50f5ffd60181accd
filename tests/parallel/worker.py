"""Runs check functions on 8 simulated CPU devices for tests/parallel (started by conftest.py).

Protocol: one JSON line per message on stdin/stdout (no pickles: nothing executable crosses). A
request is [file, function name, args]; the reply is ["ok", value] or ["error", traceback text].
Anything the checks print goes to stderr.
"""

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
  replies = os.fdopen(os.dup(1), "wb")
  os.dup2(2, 1)  # stray prints must not corrupt the protocol
  requests = sys.stdin.buffer
  sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]  # as pytest sees them
  import jax  # noqa: PLC0415 (after the environment is set)

  assert jax.device_count() == 8, f"worker expected 8 simulated devices, got {jax.devices()}"
  modules = {}
  while line := requests.readline():
    file, name, args = json.loads(line)
    try:
      if file not in modules:
        spec = importlib.util.spec_from_file_location(f"_worker_{Path(file).stem}", file)
        modules[file] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[file])
      reply = ("ok", getattr(modules[file], name)(*args))
    except BaseException:  # noqa: BLE001 (reported to the test, which fails with it)
      reply = ("error", traceback.format_exc())
    replies.write(json.dumps(reply).encode() + b"\n")
    replies.flush()


if __name__ == "__main__":
  main()
