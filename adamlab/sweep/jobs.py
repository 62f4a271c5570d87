"""One job of a sweep: a run, or runs packed into one program, trained in a subprocess.

A job claims its runs with file locks (`claims/RUN.lock`, held by the training process
too), so two sweeps on one directory, or a sweep resumed while a killed one's runs
are still dying, never train a run twice. The result of a finished run is its
`result.json`; a run stopped by non-finite steps is a result too (diverged).
"""

import contextlib
import ctypes
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

from adamlab.files import write_json
from adamlab.sweep import grid
from adamlab.train import metrics as metrics_lib
from adamlab.train.checks import pack_key
from adamlab.train.preemption import EXIT_PREEMPTED, SIGNALS
from adamlab.train.train import STOPPED

BUSY = "busy"  # claimed by another process
PREEMPTED = "preempted"  # stopped by a signal with a checkpoint: not a result, not failed
STOP = threading.Event()  # set on SIGTERM / SIGINT: no job starts after it
CLAIM_POLL_S = 0.2
_children = set()  # the training processes running now
_lock = threading.Lock()


@contextlib.contextmanager
def forwarding_signals():
  """While the block runs, SIGTERM or SIGINT sets STOP and is passed on to every running
  training process, which checkpoints its step and exits with EXIT_PREEMPTED."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  STOP.clear()  # (a signal to an earlier sweep of this process does not stop this one)
  old = {s: signal.signal(s, on_signal) for s in SIGNALS}
  try:
    yield
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)


def on_signal(signum, frame) -> None:
  del signum, frame
  stop()


def stop() -> None:
  """Start no job from now on, and SIGTERM every running training process: each
  checkpoints its step and exits with EXIT_PREEMPTED."""
  STOP.set()
  with _lock:
    for child in _children:
      child.send_signal(signal.SIGTERM)


def group(sweep: dict, todo: list, pack: int) -> list:
  """Runs as jobs: up to `pack` runs whose configs differ only in optimizer scalars."""
  if pack <= 1:
    return [[run] for run in todo]
  groups = {}
  for rid, values in todo:
    config = grid.run_config(sweep, values)
    key = pack_key(config) if not config.rewind_skip else rid  # rewinds cannot be packed
    groups.setdefault(key, []).append((rid, values))
  return [runs[i : i + pack] for runs in groups.values() for i in range(0, len(runs), pack)]


def train(sweep: dict, workdir: str, job: list, block: bool = False) -> dict:
  """Train the job's runs that are not done or claimed; {run_id: status}."""
  if STOP.is_set():
    return {rid: PREEMPTED for rid, _ in job}
  status, claims = {}, {}
  for rid, values in job:
    lock = _claim(os.path.join(workdir, "claims", rid + ".lock"), block)
    if lock is None:
      status[rid] = BUSY
    elif os.path.exists(result_path(workdir, rid)):
      status[rid] = "done"  # finished by another process meanwhile
      lock.close()
    else:
      claims[rid] = (values, lock)
  if not claims:
    return status
  locks = [lock.fileno() for _, lock in claims.values()]
  log_path = os.path.join(workdir, "logs", next(iter(claims)) + ".log")  # a pack's: its first run's
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  if len(claims) == 1:
    ((rid, (values, _)),) = claims.items()
    cmd = [
      sys.executable,
      "-m",
      "adamlab.cli",
      "train",
      "--workdir",
      os.path.join(workdir, rid),
      "--config=" + sweep["base"],
      *grid.flags(_overrides(sweep, values, workdir)),
    ]
  else:
    spec = dict(
      base=sweep["base"],
      runs=[
        dict(workdir=os.path.join(workdir, rid), overrides=_overrides(sweep, values, workdir))
        for rid, (values, _) in claims.items()
      ],
    )
    spec_path = log_path[: -len(".log")] + ".pack.json"
    write_json(spec_path, spec)
    cmd = [sys.executable, "-m", "adamlab.sweep.pack", spec_path]
  try:
    code = _train_process(cmd, log_path, locks)
    for rid, (values, _) in claims.items():
      status[rid] = PREEMPTED if code == EXIT_PREEMPTED else _record(workdir, rid, values)
      if status[rid] == "failed" and STOP.is_set() and code in (-s for s in SIGNALS):
        status[rid] = PREEMPTED  # our signal reached it before it could catch it (importing)
  finally:
    for _, lock in claims.values():
      lock.close()
  return status


def _overrides(sweep: dict, values: dict, workdir: str) -> dict:
  """A run's config overrides; with W&B on and no group set, the group is the sweep
  directory's name (and the run's W&B name its id, the name of its directory)."""
  overrides = {**sweep["fixed"], **values}
  wandb = grid.run_config(sweep, values).wandb
  if wandb.mode != "off" and not wandb.group:
    overrides["wandb.group"] = os.path.basename(os.path.abspath(workdir))
  return overrides


def _train_process(cmd, log_path, locks) -> int:
  """Run one training process to its end; its exit code."""
  with open(log_path, "a") as out, _lock:
    if STOP.is_set():
      return EXIT_PREEMPTED  # (nothing started: the runs resume next time)
    # The locks go with the child, which dies with us: no orphan trains unclaimed.
    child = subprocess.Popen(
      cmd, stdout=out, stderr=subprocess.STDOUT, pass_fds=locks, preexec_fn=_die_with_parent
    )
    _children.add(child)
  try:
    return child.wait()
  finally:
    with _lock:
      _children.discard(child)


def _record(workdir, rid, values) -> str:
  """Write result.json of a run that ended; "failed" (not recorded, retried) if it crashed."""
  run_dir = os.path.join(workdir, rid)
  metrics_path = os.path.join(run_dir, "metrics.jsonl")
  stopped = os.path.exists(os.path.join(run_dir, STOPPED))
  rows = metrics_lib.read(metrics_path) if os.path.exists(metrics_path) else []
  final = rows[-1] if rows else {}
  if not stopped and (not rows or final.get("step") != _steps(run_dir)):
    return "failed"  # (a run that wrote no metrics may not have written config.json either)
  losses = [r["loss"] for r in rows if isinstance(r.get("loss"), float)]
  evals = [r["eval_loss"] for r in rows if isinstance(r.get("eval_loss"), float)]
  diverged = stopped or not losses or not math.isfinite(losses[-1])
  write_json(
    result_path(workdir, rid),
    dict(
      id=rid,
      values=values,
      diverged=diverged,
      steps=final.get("step", 0),
      final_loss=losses[-1] if losses else None,
      best_loss=min(losses) if losses else None,
      final_eval_loss=evals[-1] if evals else None,
      best_eval_loss=min(evals) if evals else None,
      final_eval_accuracy=final.get("eval_accuracy"),
    ),
  )
  return "diverged" if diverged else "done"


def _steps(run_dir) -> int:
  with open(os.path.join(run_dir, "config.json")) as f:
    return json.load(f)["steps"]


def _claim(path: str, block: bool):
  """An open, locked file (the claim), or None if another process holds it (with
  `block`: None only once a stop comes while waiting for it)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  f = open(path, "a")
  while True:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return f
    except BlockingIOError:
      if not block or STOP.is_set():
        f.close()
        return None
      time.sleep(CLAIM_POLL_S)  # (polled, not a blocking flock, so that a stop is seen)


def _die_with_parent():
  ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def result_path(workdir, rid):
  return os.path.join(workdir, rid, "result.json")
