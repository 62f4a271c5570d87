"""Preemption: SIGTERM or SIGINT ends a run after its current step, with a checkpoint of
that step, its metrics flushed, exit code 75 and one line; the same command resumes it, and
the result equals an uninterrupted run's bit for bit. A sweep passes the signal on to its
runs: they resume when the sweep is run again, and none is counted as failed."""

import concurrent.futures
import fcntl
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from adamlab.sweep import grid, jobs, results
from adamlab.train import preemption
from tests.reliability.test_kill_anywhere import _lines
from tests.reliability.test_sweeps import GRID, check_complete, sweep
from tests.commands import ROOT
from tests.sweep.test_sweep import sweep_file
from tests.train.test_trainer import final_params, rows, science, train

STEPS = 300
ARGS = [f"--config.steps={STEPS}", "--config.log_every=1", "--config.checkpoint_every=1000"]
MESSAGE = (
  r"adamlab: preempted: (SIGTERM|SIGINT) at step (\d+): checkpointed; run the same "
  r"command again to resume"
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ref")
  r = train(workdir, *ARGS)
  assert r.returncode == 0, r.stderr
  return workdir


def _when(proc, ready, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None and not ready():
    time.sleep(0.002)
  assert proc.poll() is None, "the process ended before it could be signalled"


def test_sigterm_and_sigint_are_recorded_not_fatal_while_training():
  for sig in (signal.SIGINT, signal.SIGTERM):
    with preemption.signals() as flag:
      os.kill(os.getpid(), sig)  # delivered to this (the main) thread before kill returns
      assert flag.signal == sig.name
    assert signal.getsignal(sig) is not flag.set  # the old handler is back


def test_a_signalled_run_checkpoints_its_step_and_resumes_bitwise(tmp_path, reference):
  sig = signal.SIGTERM  # (SIGINT takes the same path: the test above)
  run = tmp_path / "run"
  proc = train(run, *ARGS, wait=False)
  _when(proc, lambda: _lines(run / "metrics.jsonl") >= 5)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 75, err
  found = re.fullmatch(MESSAGE, err.strip().splitlines()[-1])
  assert found and found.group(1) == sig.name, err
  step = int(found.group(2))
  assert 5 <= step < STEPS
  # The step it ended on is checkpointed (checkpoint_every is past the end) and logged.
  assert os.listdir(run / "checkpoints") == [str(step)]
  assert [r["step"] for r in rows(run)] == list(range(1, step + 1))
  done = train(run, *ARGS)
  assert done.returncode == 0, done.stderr
  assert f"at step {step}" in done.stdout
  got, want = rows(run), rows(reference)
  assert [r["step"] for r in got] == list(range(1, STEPS + 1))
  assert [science(r) for r in got] == [science(r) for r in want]
  pa, pb = final_params(run), final_params(reference)
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def test_a_signal_during_setup_stops_the_run_before_its_first_step(tmp_path):
  # The run directory exists but nothing is compiled yet: the signal is still caught.
  run = tmp_path / "run"
  proc = train(run, *ARGS, wait=False)
  _when(proc, lambda: (run / "config.json").exists())
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 75, err
  # It stops before compiling its step: nothing is trained, nothing is saved.
  assert err.strip().splitlines()[-1] == (
    "adamlab: preempted: SIGTERM at step 0: nothing trained yet; run the same command "
    "again to resume"
  ), err
  assert not os.listdir(run / "checkpoints") and _lines(run / "metrics.jsonl") == 0
  done = train(run, *ARGS)  # the same command starts it
  assert done.returncode == 0, done.stderr
  assert [r["step"] for r in rows(run)] == list(range(1, STEPS + 1))


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_signalled_sweep_stops_its_runs_and_resumes_them(tmp_path, backend):
  path, workdir = sweep_file(tmp_path, GRID), tmp_path / "s"
  proc = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "adamlab.cli",
      "sweep",
      "--config",
      path,
      "--workdir",
      str(workdir),
      "--workers",
      "2",
      "--backend",
      backend,
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  _when(proc, lambda: any(_lines(m) >= 3 for m in workdir.glob("*/metrics.jsonl")))
  proc.send_signal(signal.SIGTERM)  # the sweep only: it passes the signal on
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 75, err
  assert err.strip().splitlines()[-1].startswith("adamlab: preempted: "), err
  failed = re.findall(r"(\d+) failed", out)
  assert failed and set(failed) == {"0"}, out  # preempted runs are not failures
  _, _, table = results.collect(str(workdir))
  assert len([r for r in table if r["status"] == "done"]) < 4  # it was stopped
  logs = "".join(open(workdir / "logs" / f).read() for f in os.listdir(workdir / "logs"))
  assert re.search(MESSAGE.replace("(SIGTERM|SIGINT)", "SIGTERM"), logs), logs
  again = sweep(path, workdir, "--workers", "2")
  assert again.returncode == 0, again.stderr
  # Every run trained once to its end, each step logged once: the preempted ones resumed.
  check_complete(workdir, killed=False)
  logs = "".join(open(workdir / "logs" / f).read() for f in os.listdir(workdir / "logs"))
  assert "resumed" in logs


def test_a_job_waiting_for_another_sweeps_run_sees_a_stop(tmp_path):
  # Another sweep holds the run's claim; this one waits for it (its blocking second
  # round) until a stop comes, then gives the run up as busy instead of waiting on.
  path, workdir = sweep_file(tmp_path, GRID), tmp_path / "s"
  rid, values = grid.runs(grid.load_sweep(path))[0]
  (workdir / "claims").mkdir(parents=True)
  held = open(workdir / "claims" / f"{rid}.lock", "a")
  fcntl.flock(held, fcntl.LOCK_EX)
  pool = concurrent.futures.ThreadPoolExecutor(1)
  try:
    with jobs.forwarding_signals():
      waiting = pool.submit(jobs.train, grid.load_sweep(path), str(workdir), [(rid, values)], True)
      time.sleep(1.0)
      assert not waiting.done()
      jobs.stop()
      assert waiting.result(timeout=5) == {rid: jobs.BUSY}
  finally:  # (stopped, so a job still waiting starts nothing once the claim is free)
    jobs.STOP.set()
    held.close()
    pool.shutdown()
    jobs.STOP.clear()
  assert not (workdir / rid).exists()  # nothing was trained
