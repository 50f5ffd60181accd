"""The `on_8_devices` fixture (a plugin of tests/conftest.py): sharding tests run on 8 simulated CPU
devices in one worker process, so the device count never leaks into the rest of the suite.
`on_8_devices(check, *args)` runs the module-level function `check` there and fails with its error."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST_COMPILE

# 8 fake devices; the suite's fast-compiling CPU code (tiny shapes: compile time dominates); generous
# collective timeouts, since 8 device threads share 2 busy cores.
WORKER_FLAGS = (f"--xla_force_host_platform_device_count=8 {FAST_COMPILE} --xla_cpu_collective_timeout_seconds=900 "
                "--xla_cpu_collective_call_terminate_timeout_seconds=900")


class Worker:
  def __init__(self):
    env = {**os.environ, "XLA_FLAGS": WORKER_FLAGS, "JAX_PLATFORMS": "cpu"}
    self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("worker.py"))],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

  def __call__(self, check, *args):
    request = json.dumps([inspect.getsourcefile(check), check.__name__, args])
    self.process.stdin.write(request.encode() + b"\n")
    self.process.stdin.flush()
    reply = self.process.stdout.readline()
    if not reply:
      pytest.fail(f"the 8-device worker died (exit code {self.process.wait()}); see its stderr above")
    status, value = json.loads(reply)
    if status == "error":
      pytest.fail(f"{check.__name__}{args} failed on 8 devices:\n{value}", pytrace=False)
    return value

  def close(self):
    self.process.stdin.close()
    self.process.wait(timeout=60)


@pytest.fixture(scope="session")
def on_8_devices():
  worker = Worker()
  yield worker
  worker.close()
