"""Run a sweep on this machine: N worker processes, each an `adamlab train` subprocess.

Completed runs (with result.json) are skipped; an interrupted run resumes from its
checkpoints, because its run directory is the same; a run that diverges (the trainer
stops on non-finite steps, or its loss is not finite) is a result, not a crash.
"""

import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time

from adamlab import data
from adamlab.optim.config_error import ConfigError
from adamlab.sweep import grid, results
from adamlab.train import metrics as metrics_lib
from adamlab.train.train import check_config

STOPPED = 3  # `adamlab train`'s exit code for a run stopped by non-finite steps


def prepare(sweep_path: str, workdir: str):
  """Load and check every run of the sweep before anything is launched or written."""
  sweep = grid.load_sweep(sweep_path)
  planned = grid.runs(sweep)
  for i, (rid, values) in enumerate(planned):
    config = grid.run_config(sweep, values)
    check_config(config)  # no devices here: the runs' processes own them
    if i == 0:
      data.Source(config)  # the data is there and fits the model
  saved = os.path.join(workdir, "sweep.json")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError("--workdir", workdir, "a directory (this is a file)")
  if os.path.exists(saved):
    try:
      with open(saved) as f:
        same = json.load(f)["sweep"] == json.loads(json.dumps(sweep))
    except (ValueError, KeyError) as err:
      raise ConfigError("--workdir", workdir, f"a sweep with a readable sweep.json ({err})")
    if not same:
      raise ConfigError("--workdir", workdir, "a new directory, or one holding this same sweep")
  elif os.path.isdir(workdir) and os.listdir(workdir):
    raise ConfigError("--workdir", workdir, "a new or empty directory, or an adamlab sweep")
  return sweep, planned


def run(sweep_path: str, workdir: str, workers: int = 1, log=print) -> dict:
  """Run every missing run; returns {run_id: status}."""
  if workers < 1:
    raise ConfigError("--workers", workers, "an integer >= 1")
  sweep, planned = prepare(sweep_path, workdir)
  os.makedirs(workdir, exist_ok=True)
  _write_json(os.path.join(workdir, "sweep.json"),
              dict(sweep=sweep, runs=[dict(id=r, values=v) for r, v in planned]))
  status = {rid: "done" for rid, _ in planned if os.path.exists(_result_path(workdir, rid))}
  todo = [(rid, values) for rid, values in planned if rid not in status]
  log(f"sweep: {len(planned)} runs, {len(status)} already done, {len(todo)} to run, "
      f"{workers} worker(s)")
  t0, finished = time.time(), 0
  pool = concurrent.futures.ThreadPoolExecutor(workers)
  futures = {pool.submit(_train, sweep, workdir, rid, values): rid for rid, values in todo}
  try:
    for future in concurrent.futures.as_completed(futures):
      rid = futures[future]
      status[rid] = future.result()
      finished += 1
      running = min(workers, len(todo) - finished)
      failed = sum(s == "failed" for s in status.values())
      eta = (time.time() - t0) / finished * (len(todo) - finished)
      log(f"sweep: {sum(s != 'failed' for s in status.values())}/{len(planned)} done, "
          f"{running} running, {failed} failed, ETA {eta / 60:.1f} min  [{rid}: {status[rid]}]")
  finally:  # on Ctrl-C or an error, queued runs are not started
    pool.shutdown(wait=True, cancel_futures=True)
  results.write(workdir)
  return status


def _train(sweep, workdir, rid, values) -> str:
  run_dir = os.path.join(workdir, rid)
  cmd = [sys.executable, "-m", "adamlab.cli", "train", "--workdir", run_dir,
         "--config=" + sweep["base"], *grid.flags({**sweep["fixed"], **values})]
  with open(os.path.join(workdir, f"{rid}.log"), "a") as out:
    proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
  metrics_path = os.path.join(run_dir, "metrics.jsonl")
  if proc.returncode not in (0, STOPPED) or not os.path.exists(metrics_path):
    return "failed"  # a crash: not recorded, so the next `adamlab sweep` retries it
  rows = metrics_lib.read(metrics_path)
  final = rows[-1] if rows else {}
  losses = [r["loss"] for r in rows if isinstance(r.get("loss"), float)]
  evals = [r["eval_loss"] for r in rows if isinstance(r.get("eval_loss"), float)]
  diverged = proc.returncode == STOPPED or not losses or not math.isfinite(losses[-1])
  _write_json(_result_path(workdir, rid), dict(
      id=rid, values=values, diverged=diverged, steps=final.get("step", 0),
      final_loss=losses[-1] if losses else None, best_loss=min(losses) if losses else None,
      final_eval_loss=evals[-1] if evals else None, best_eval_loss=min(evals) if evals else None,
      final_eval_accuracy=final.get("eval_accuracy")))
  return "diverged" if diverged else "done"


def _result_path(workdir, rid):
  return os.path.join(workdir, rid, "result.json")


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)
