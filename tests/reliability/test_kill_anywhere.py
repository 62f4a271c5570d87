"""Kill anywhere: SIGKILL a run at random points, and during a checkpoint save; resume;
the result equals an uninterrupted run's bit for bit, and no metrics step is lost or doubled."""

import pathlib
import random
import signal
import time

import numpy as np

from tests.train.test_trainer import final_params, rows, science, train

ARGS = ["--config.steps=30", "--config.log_every=1", "--config.checkpoint_every=3"]


def _kill_when(proc, ready, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if ready():
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return True
    time.sleep(0.002)
  proc.kill()
  proc.wait()
  return False


def _lines(path: pathlib.Path) -> int:
  return sum(1 for _ in open(path)) if path.exists() else 0


def _saving(run: pathlib.Path) -> bool:
  """An Orbax save in flight: its temporary directory exists."""
  ckpts = run / "checkpoints"
  return ckpts.exists() and any("tmp" in p.name for p in ckpts.iterdir())


def test_killed_at_random_points_and_during_a_save_resumes_bitwise(tmp_path):
  ref = train(tmp_path / "ref", *ARGS)
  assert ref.returncode == 0, ref.stderr
  run = tmp_path / "killed"
  rng = random.Random(0)
  kills = sorted(rng.sample(range(2, 28), 3))
  for kill_at in kills:  # after `kill_at` metrics lines: mid-step, mid-write, anywhere
    assert _kill_when(
      train(run, *ARGS, wait=False), lambda: _lines(run / "metrics.jsonl") >= kill_at
    )
  # And once while a checkpoint is being written.
  assert _kill_when(train(run, *ARGS, wait=False), lambda: _saving(run)), "no save seen"
  done = train(run, *ARGS)
  assert done.returncode == 0, done.stderr
  assert "resumed" in done.stdout
  got, want = rows(run), rows(tmp_path / "ref")
  assert [r["step"] for r in got] == list(range(1, 31))  # none missing, none twice
  assert [science(r) for r in got] == [science(r) for r in want]
  pa, pb = final_params(run), final_params(tmp_path / "ref")
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
