"""One trainer: state, sharded jit step, eval, Orbax checkpoints, metrics."""

from adamlab.train.train import TrainingStopped, run, validate
