"""Run a sweep: N jobs at a time, each an `adamlab train` subprocess (or a pack of runs).

backend "local" runs the jobs from threads of this process; "ray" runs them as Ray
tasks, on this machine or on a cluster. Completed runs (with result.json) are
skipped; an interrupted run resumes from its checkpoints, because its run directory
is the same; a run that diverges (the trainer stops on non-finite steps, or its loss
is not finite) is a result, not a crash.
"""

import concurrent.futures
import os
import time

from adamlab.errors import ConfigError
from adamlab.files import write_json
from adamlab.sweep import grid, jobs, results
from adamlab.train.checks import check_config, check_dir, open_data
from adamlab.train.preemption import Preempted


def prepare(sweep_path: str, workdir: str):
  """Load and check every run of the sweep before anything is launched or written."""
  sweep = grid.load_sweep(sweep_path)
  planned = grid.runs(sweep)
  for i, (rid, values) in enumerate(planned):
    config = grid.run_config(sweep, values)
    check_config(config)  # no devices here: the runs' processes own them
    if i == 0:
      open_data(config)  # the data is there and fits the model
  plan = dict(sweep=sweep, runs=[dict(id=r, values=v) for r, v in planned])
  check_dir(workdir, "sweep.json", plan, "sweep")
  return sweep, planned, plan


def check_executor(workers: int, pack: int) -> None:
  for field, value in (("--workers", workers), ("--pack", pack)):
    if not isinstance(value, int) or value < 1:
      raise ConfigError(field, value, "an integer >= 1")


def run(
  sweep_path: str,
  workdir: str,
  workers: int = 1,
  backend: str = "local",
  pack: int = 1,
  address: str = "",
  log=print,
) -> dict:
  """Run every missing run of the sweep; returns {run_id: status}."""
  check_executor(workers, pack)
  sweep, planned, plan = prepare(sweep_path, workdir)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "sweep.json"), plan)
  with jobs.forwarding_signals():
    status = execute(sweep, workdir, planned, workers, backend, pack, address, log)
  results.write(workdir)
  check_preempted(status)
  return status


def check_preempted(status: dict) -> None:
  """Preempted (with the runs stopped by it checkpointed) if a signal ended the sweep."""
  stopped = sum(s == jobs.PREEMPTED for s in status.values())
  if jobs.STOP.is_set() or stopped:
    raise Preempted(
      f"{stopped} run(s) stopped with a checkpoint; run the same command again to resume them"
    )


def execute(
  sweep: dict,
  workdir: str,
  planned: list,
  workers: int = 1,
  backend: str = "local",
  pack: int = 1,
  address: str = "",
  log=print,
) -> dict:
  """Train the planned runs that have no result yet, `workers` jobs at a time."""
  status = {rid: "done" for rid, _ in planned if os.path.exists(jobs.result_path(workdir, rid))}
  todo = [(rid, values) for rid, values in planned if rid not in status]
  work = jobs.group(sweep, todo, pack)
  log(
    f"sweep: {len(planned)} runs, {len(status)} already done, {len(todo)} to run "
    f"({len(work)} jobs), {workers} worker(s), {backend}"
  )
  t0, finished_jobs = time.time(), 0

  def done(job_status):
    nonlocal finished_jobs
    status.update(job_status)
    finished_jobs += 1
    finished = sum(status.get(r) in ("done", "diverged", "failed") for r, _ in todo)
    failed = sum(s == "failed" for s in status.values())
    eta = (time.time() - t0) / max(1, finished) * (len(todo) - finished)
    log(
      f"sweep: {sum(s in ('done', 'diverged') for s in status.values())}/{len(planned)} done, "
      f"{max(0, min(workers, len(work) - finished_jobs))} running, {failed} failed, "
      f"ETA {eta / 60:.1f} min  [{', '.join(f'{r}: {s}' for r, s in job_status.items())}]"
    )

  map_jobs = _ray_map if backend == "ray" else _thread_map
  # Runs another process has claimed are tried again at the end, waiting for the claim.
  map_jobs(sweep, workdir, work, workers, address, done, block=False)
  busy = [[(r, v)] for r, v in todo if status.get(r) == jobs.BUSY]
  if busy and not jobs.STOP.is_set():
    log(f"sweep: waiting for {len(busy)} run(s) another process is training")
    map_jobs(sweep, workdir, busy, workers, address, done, block=True)
  return status


def _thread_map(sweep, workdir, work, workers, address, done, block):
  pool = concurrent.futures.ThreadPoolExecutor(workers)
  futures = [pool.submit(jobs.train, sweep, workdir, job, block) for job in work]
  try:
    for future in concurrent.futures.as_completed(futures):
      done(future.result())
  finally:  # on Ctrl-C or an error, queued jobs are not started
    pool.shutdown(wait=True, cancel_futures=True)


def _ray_map(sweep, workdir, work, workers, address, done, block):
  from adamlab.sweep import ray_backend

  ray_backend.map_jobs(sweep, workdir, work, workers, address, done, block)
