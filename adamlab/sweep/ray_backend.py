"""Sweep jobs as Ray tasks: `ray.init()` here by default, or a cluster's address.

Each task is one job (jobs.train), which trains in a subprocess on the machine the
task lands on; the sweep directory must be on a file system every machine sees.

Preemption reaches the tasks through Ray: a signalled driver sets a small stop actor,
which every task polls; a task that sees it stops its job as a local sweep does (its
training process checkpoints and exits with EXIT_PREEMPTED; no new job starts).
"""

import concurrent.futures
import signal

from adamlab.errors import ConfigError
from adamlab.sweep import jobs
from adamlab.train.preemption import SIGNALS

POLL_S = 0.5  # how often the driver and the tasks look for a stop


class StopFlag:
  """Set once by the driver, read by the tasks (as a Ray actor: one per call)."""

  def __init__(self):
    self.stopped = False

  def set(self):
    self.stopped = True

  def is_set(self) -> bool:
    return self.stopped


def map_jobs(sweep, workdir, work, workers, address, done, block):
  try:
    import ray
  except ImportError:
    raise ConfigError("--backend", "ray", "local, or install Ray: pip install 'adamlab[ray]'")
  if not ray.is_initialized():
    forwarding = {s: signal.getsignal(s) is jobs.on_signal for s in SIGNALS}
    # Locally, `workers` CPUs for tasks of one CPU each bounds the jobs running at once.
    ray.init(
      address=address or None,
      num_cpus=None if address else workers,
      include_dashboard=False,
      log_to_driver=False,
    )
    for s in SIGNALS:  # ray.init installs its own SIGTERM handler, which aborts the driver
      if forwarding[s]:
        signal.signal(s, jobs.on_signal)
  stop = ray.remote(num_cpus=0)(StopFlag).remote()
  task = ray.remote(num_cpus=1, max_retries=0)(_task)
  pending = [task.remote(sweep, workdir, job, block, stop) for job in work]
  stopping = False
  try:
    while pending:
      ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
      if ready:
        done(ray.get(ready[0]))
      if jobs.STOP.is_set() and not stopping:
        ray.get(stop.set.remote())  # the tasks stop; the loop collects their statuses
        stopping = True
  finally:  # on an error, tasks not finished are cancelled
    for ref in pending:
      ray.cancel(ref, force=True)
    ray.kill(stop)


def _task(sweep, workdir, job, block, stop) -> dict:
  """jobs.train in a Ray worker, which stops it when the driver sets `stop`."""
  import ray

  jobs.STOP.clear()  # (a worker process runs tasks of earlier sweeps too)
  if ray.get(stop.is_set.remote()):
    jobs.STOP.set()
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    future = pool.submit(jobs.train, sweep, workdir, job, block)
    while True:
      try:
        return future.result(timeout=POLL_S)
      except concurrent.futures.TimeoutError:
        if not jobs.STOP.is_set() and ray.get(stop.is_set.remote()):
          jobs.stop()
