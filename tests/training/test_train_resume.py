"""train.py end to end on a tiny model: N steps straight equal k steps, then a stop (SIGKILL, or SIGTERM
for a preemption), then a resume to N, bit for bit (parameters, optimizer, EMA); the run leaves TensorBoard
metrics, sample videos and a bundle, which a rerun writes when it was lost; a second run on a busy
workdir is refused; a checkpoint folder that cannot be written stops the run in one line."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import train as train_script
from conftest import ROOT, numpy_random_model, read_scalars
from dreamactor_jax import media
from dreamactor_jax.checkpoints import save_model
from dreamactor_jax.checkpoints.model_state import flatten, model_params
from dreamactor_jax.data import write_stage2_dataset
from dreamactor_jax.models.vae import VAEConfig, WanVAE
from dreamactor_jax.sampling.bundle import read_info
from dreamactor_jax.training.workdir import lock_workdir

STEPS = 6


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory) -> Path:
  config = VAEConfig(base_dim=8, dim_mult=(1, 1, 2, 2), num_res_blocks=1, mode="single")
  folder = tmp_path_factory.mktemp("vae")
  save_model(folder, model_params(numpy_random_model(lambda: WanVAE(config, rngs=nnx.Rngs(0)))), config)
  return folder


def train_args(workdir: Path, data: Path, vae: Path, size: str = "tiny", *, stage: int = 1, steps: int = STEPS,
               every: int = 2) -> list[str]:
  """train.py's flags for stage `stage`'s dataset `data`, logging and checkpointing every `every` steps.
  The tiny layout trains on the data's two frame sizes (bucketed batches); animate2-tiny on one, so that
  its training step compiles once."""
  one_size = ["--config.data.buckets=((48, 80),)"] if size == "animate2-tiny" else []
  return [f"--config=dreamactor_jax/configs/stage{stage}.py:{size}", *one_size, f"--workdir={workdir}",
          f"--config.init.vae={vae}", f"--config.data.stage{stage}_dir={data}", f"--config.train.steps={steps}",
          f"--config.train.log_every={every}", "--config.train.ema_decay=0.9", "--config.train.grad_accum=2",
          "--config.train.continuation_prob=0.5", f"--config.checkpoint.every={every}",
          "--config.checkpoint.keep_last=10", "--config.optimizer.learning_rate=1e-2",
          f"--config.train.sample_every={steps}", "--config.train.sample_steps=2", "--config.train.num_samples=1"]


def run(args: list[str]) -> None:
  """train.py's main in this process: each interpreter started would pay seconds of imports and tracing.
  Only the runs that a signal stops have processes of their own."""
  assert train_script.main(args) == 0


def final_state(workdir: Path) -> dict[str, np.ndarray]:
  with ocp.CheckpointManager(workdir / "checkpoints") as manager:
    assert manager.latest_step() == STEPS
    restored = manager.restore(STEPS, args=ocp.args.Composite(trainable=ocp.args.StandardRestore(),
                                                              opt_state=ocp.args.StandardRestore(),
                                                              ema=ocp.args.StandardRestore()))
  return {name: np.asarray(leaf) for name, leaf in
          flatten({k: jax.tree.map(np.asarray, dict(restored[k])) for k in ("trainable", "ema")}).items()}


@pytest.mark.parametrize("size", ["tiny", "animate2-tiny"])
def test_kill_and_resume_is_bit_identical(tmp_path, stage1_data, vae_folder, size, capsys):
  data, _ = stage1_data
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  own_handler = signal.getsignal(signal.SIGTERM)
  run(train_args(straight, data, vae_folder, size))
  info = read_info(straight / "bundle")
  assert info.stage == "pose" and info.pose == dict(threshold=0.3, bbox_normalize=True, bbox_fill=0.9)  # as drawn
  scalars = read_scalars(straight / "tensorboard")
  assert [step for step, _ in scalars["loss"]] == [2, 4, 6] and "learning_rate" in scalars and "grad_norm" in scalars
  assert any(name.startswith("loss/sigma_") for name in scalars)
  (sample,) = (straight / "samples" / f"step_{STEPS:07d}").glob("*[!w].mp4")  # not the _preview
  assert media.read_video(sample).frames.shape[0] == 9
  assert signal.getsignal(signal.SIGTERM) is own_handler  # the run's preemption handler is gone again

  if size == "tiny":  # the workdir's bundle and lock do not depend on the layout: checked once
    # Killed after its last checkpoint, before the bundle: the same command writes the bundle.
    shutil.rmtree(straight / "bundle")
    run(train_args(straight, data, vae_folder, size))
    assert read_info(straight / "bundle") == info

    # A second run on a workdir in use is refused at once, naming the workdir and the holder.
    capsys.readouterr()
    with lock_workdir(straight):
      assert train_script.main(train_args(straight, data, vae_folder, size)) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --workdir={straight}: another run (pid {os.getpid()}) is training in it; wait for it to end, or "
        "give another --workdir"]

  # Stopped mid-run in a process of its own, then resumed to the end by the same command. One
  # layout-independent way to stop per layout: killed outright (SIGKILL) resumes from its last
  # checkpoint; preempted (SIGTERM) saves where it stopped and exits 143. The process loads the
  # programs this one compiled from the suite's compilation cache (conftest.py).
  outright = size == "tiny"
  process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *train_args(killed, data, vae_folder, size)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  deadline = time.monotonic() + 600
  while not (killed / "checkpoints" / "2" / "_CHECKPOINT_METADATA").exists():
    assert process.poll() is None and time.monotonic() < deadline, "the run ended before its step-2 checkpoint"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL if outright else signal.SIGTERM)
  if outright:
    process.wait()
  else:
    assert process.wait() == 143
    assert "run the same command to resume" in process.stdout.read()
  assert not (killed / "checkpoints" / str(STEPS)).exists(), "stopped too late to test a resume"
  run(train_args(killed, data, vae_folder, size))

  expected, resumed = final_state(straight), final_state(killed)
  assert expected.keys() == resumed.keys() and len(expected) > 4
  for name, value in expected.items():
    np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_animate2_trains_through_both_stages(tmp_path, stage1_data, vae_folder):
  """A random tiny Wan-Animate-2 (layout animate2) through train.py: stage 1 on rendered skeletons,
  then stage 2 from stage 1's DiT on cross-identity triplets; the loss falls in both, and each run
  exports an animate2 bundle."""
  from tests.data.test_stage2 import record

  data, _ = stage1_data
  pairs = tmp_path / "pairs"
  write_stage2_dataset(pairs, [record(v, seed=i) for i, v in enumerate("abcd")], progress=False)
  for stage, stage_data, extra in ((1, data, []),
                                   (2, pairs, [f"--config.init.dit={tmp_path / 'stage1' / 'bundle' / 'dit'}"])):
    workdir = tmp_path / f"stage{stage}"
    run([*train_args(workdir, stage_data, vae_folder, "animate2-tiny", stage=stage, steps=20, every=5), *extra])
    losses = [loss for _, loss in read_scalars(workdir / "tensorboard")["loss"]]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], (stage, losses)
    info = read_info(workdir / "bundle")
    assert (info.layout, info.stage, info.preset) == ("animate2", "pose" if stage == 1 else "rgb", "base")
