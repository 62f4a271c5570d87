"""Interrupted and concurrent sweeps: every run is trained exactly once and results.csv
is complete, whether the sweep is killed and restarted (local or Ray) or two sweep
processes share one directory."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.commands import ROOT
from tests.sweep.test_sweep import SWEEP, sweep_file

# Four runs of 40 steps: long enough to be killed in the middle of.
GRID = SWEEP.replace('"steps": 6,', '"steps": 40, "checkpoint_every": 5,').replace(
  '"log_every": 3,', '"log_every": 1,'
)


def sweep(path, workdir, *extra, wait=True, out=subprocess.DEVNULL):
  cmd = [
    sys.executable,
    "-m",
    "adamlab.cli",
    "sweep",
    "--config",
    path,
    "--workdir",
    str(workdir),
    *extra,
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if wait:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
  # Its own process group, so the test can kill the sweep and everything it started.
  return subprocess.Popen(
    cmd, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, env=env, start_new_session=True
  )


def trainings(workdir, rid) -> int:
  """How many `adamlab train` processes trained the run to its end, not counting no-op
  resumes of a finished run (killed before the sweep recorded it): `adamlab train`
  prints the run directory at its end, and "resumed DIR at step N" when it resumes."""
  logs = "".join(open(workdir / "logs" / f).read() for f in os.listdir(workdir / "logs"))
  return logs.count(f"run directory: {workdir / rid} ") - logs.count(
    f"resumed {workdir / rid} at step 40\n"
  )


def check_complete(workdir, killed: bool, steps=40):
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}, rows
  for r in rows:
    lines = [json.loads(l) for l in open(workdir / r["id"] / "metrics.jsonl")]
    assert [l["step"] for l in lines] == list(range(1, steps + 1)), r["id"]  # once each
    # A run killed after its last checkpoint but before its final line is finished by
    # a no-op resume: 0 then.
    assert trainings(workdir, r["id"]) in ((0, 1) if killed else (1,)), r["id"]
  return rows


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_killed_sweep_resumes_and_runs_everything_once(tmp_path, backend):
  path, workdir = sweep_file(tmp_path, GRID), tmp_path / "s"
  proc = sweep(path, workdir, "--backend", backend, "--workers", "2", wait=False)
  deadline = time.time() + 600
  # Kill once a run is finished and another is in the middle of its steps.
  while time.time() < deadline:
    done = list(workdir.glob("*/result.json"))
    mid = [
      m
      for m in workdir.glob("*/metrics.jsonl")
      if not (m.parent / "result.json").exists() and sum(1 for _ in open(m)) >= 8
    ]
    if done and mid:
      break
    time.sleep(0.1)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  finished = {p.parent.name: p.read_text() for p in workdir.glob("*/result.json")}
  assert finished and len(finished) < 4
  r = sweep(path, workdir, "--backend", backend, "--workers", "2")
  assert r.returncode == 0, r.stderr
  # (Ray's workers may finish a run they had started after the driver is gone: they
  # hold its claim until then, so it is still trained once.)
  already = int(r.stdout.split(" already done")[0].rsplit(" ", 1)[-1])
  assert len(finished) <= already < 4
  check_complete(workdir, killed=True)
  for rid, text in finished.items():  # finished runs were left alone
    assert (workdir / rid / "result.json").read_text() == text


def test_two_sweeps_on_one_directory_never_run_a_run_twice(tmp_path):
  path, workdir = sweep_file(tmp_path, GRID), tmp_path / "s"
  a = sweep(path, workdir, wait=False)
  time.sleep(1.0)
  with open(tmp_path / "b.out", "w") as out:
    b = sweep(path, workdir, wait=False, out=out)
    assert a.wait(timeout=900) == 0 and b.wait(timeout=900) == 0
  # The second sweep met a run the first had claimed, and waited for it.
  assert "another process is training" in (tmp_path / "b.out").read_text()
  check_complete(workdir, killed=False)
  logs = "".join(open(workdir / "logs" / f).read() for f in os.listdir(workdir / "logs"))
  assert "resumed" not in logs  # no run was started a second time
