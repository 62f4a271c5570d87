"""One trainer: state, sharded jit step, eval, Orbax checkpoints, metrics, preemption."""

from adamlab.train.checks import check_config_mesh_and_data
from adamlab.train.preemption import EXIT_PREEMPTED, Preempted
from adamlab.train.train import EXIT_STOPPED, TrainingStopped, run, run_pack

__all__ = (
  "check_config_mesh_and_data",
  "EXIT_PREEMPTED",
  "Preempted",
  "EXIT_STOPPED",
  "TrainingStopped",
  "run",
  "run_pack",
)
