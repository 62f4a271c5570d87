"""Sweep jobs as Ray tasks: `ray.init()` here by default, or a cluster's address.

Each task is one job (jobs.train), which trains in a subprocess on the machine the
task lands on; the sweep directory must be on a file system every machine sees.
"""

from adamlab.errors import ConfigError
from adamlab.sweep import jobs


def map_jobs(sweep, workdir, work, workers, address, done, block):
  try:
    import ray
  except ImportError:
    raise ConfigError("--backend", "ray", "local, or install Ray: pip install 'adamlab[ray]'")
  if not ray.is_initialized():
    # Locally, `workers` CPUs for tasks of one CPU each bounds the jobs running at once.
    ray.init(address=address or None, num_cpus=None if address else workers,
             include_dashboard=False, log_to_driver=False)
  task = ray.remote(num_cpus=1, max_retries=0)(jobs.train)
  pending = [task.remote(sweep, workdir, job, block) for job in work]
  try:
    while pending:
      ready, pending = ray.wait(pending, num_returns=1)
      done(ray.get(ready[0]))
  finally:  # on Ctrl-C or an error, tasks not finished are cancelled
    for ref in pending:
      ray.cancel(ref, force=True)
