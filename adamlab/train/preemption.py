"""Preemption: SIGTERM or SIGINT asks the trainer to stop at the end of the current step.

Clusters (SLURM, preemptible VMs, spot instances) send SIGTERM some seconds before
they kill a job. While `signals()` is active, the first such signal is recorded instead
of ending the process; the trainer finishes its step, checkpoints it, flushes its
metrics and raises `Preempted`. `adamlab train` then exits with EXIT_PREEMPTED, and the
same command resumes the run exactly where it stopped.
"""

import contextlib
import signal
import threading

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again later
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(RuntimeError):
  """Training was asked to stop by a signal; its state is checkpointed."""


class Flag:
  """The name of the first signal received (None: none yet)."""

  def __init__(self):
    self.signal = None

  def set(self, signum, frame=None):
    del frame
    if self.signal is None:
      self.signal = signal.Signals(signum).name


@contextlib.contextmanager
def signals():
  """Record SIGTERM and SIGINT in a Flag while the block runs; the old handlers return
  after it. Off the main thread (where Python cannot install handlers) the flag is
  never set and signals act as usual."""
  flag = Flag()
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return
  old = {s: signal.signal(s, flag.set) for s in SIGNALS}
  try:
    yield flag
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)
