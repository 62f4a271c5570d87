"""One trainer: state, sharded jit step, eval, Orbax checkpoints, metrics."""

from adamlab.train.train import EXIT_STOPPED, TrainingStopped, run, run_pack, validate
