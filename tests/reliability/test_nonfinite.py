"""Non-finite values: faults injected from the test side (tests/reliability/faults.py) make
the loss NaN or the gradients Inf at chosen steps. Skipped steps keep the params finite and
are logged; K in a row stop the run with a clear message and a good checkpoint;
rewind-and-skip recovers."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.train.test_trainer import ROOT, SMALL, final_params, rows


def env_train(workdir, steps, *extra):
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "tests.reliability.faults",
      steps,
      "train",
      "--workdir",
      str(workdir),
      *SMALL,
      "--config.steps=20",
      "--config.log_every=1",
      "--config.checkpoint_every=5",
      *extra,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_nonfinite_steps_are_skipped_logged_and_stop_the_run(tmp_path, where):
  # Two bad steps: skipped (params unchanged across them), logged, and the run goes on.
  r = env_train(tmp_path / "skip", f"{where}:6,7")
  assert r.returncode == 0, r.stderr
  got = rows(tmp_path / "skip")
  assert [row["skipped"] for row in got] == [1.0 if s in (6, 7) else 0.0 for s in range(1, 21)]
  assert got[5]["param_norm"] == got[6]["param_norm"] == got[4]["param_norm"]
  assert all(np.isfinite(row["param_norm"]) for row in got)
  # max_nonfinite in a row: exit 3, a clear message, and a finite checkpoint of step 8.
  r = env_train(tmp_path / "stop", f"{where}:9,10,11,12,13,14,15", "--config.max_nonfinite=3")
  assert r.returncode == 3  # stopped on non-finite steps
  last = r.stderr.strip().splitlines()[-1]  # above it: the progress lines
  assert last.startswith("adamlab: training stopped: 3 non-finite steps in a row"), last
  params = final_params(tmp_path / "stop")
  assert all(np.all(np.isfinite(v)) for v in params.values())
  assert "3 non-finite steps in a row" in (tmp_path / "stop" / "stopped.txt").read_text()
  # The same command again: the run stays stopped, with the same message.
  r = env_train(tmp_path / "stop", f"{where}:9,10,11,12,13,14,15", "--config.max_nonfinite=3")
  assert r.returncode == 3


def test_rewind_and_skip_recovers(tmp_path):
  # rewind_skip: back to the checkpoint before the bad steps, skip batches, finish.
  r = env_train(
    tmp_path / "rewind", "9,10,11", "--config.max_nonfinite=3", "--config.rewind_skip=4"
  )
  assert r.returncode == 0, r.stderr
  assert "rewound to step 5" in r.stdout
  got = rows(tmp_path / "rewind")
  assert [row["step"] for row in got] == list(range(1, 21))
  assert all(np.isfinite(row["loss"]) for row in got if row["step"] > 11)
