"""The train command: `adamlab train` and `python -m adamlab.train` both end here.

Exit codes: 0 done, 2 a user's mistake (one line), 3 stopped by non-finite steps,
EXIT_PREEMPTED (75) stopped by SIGTERM or SIGINT with a checkpoint: run it again.
"""

import argparse
import sys

from adamlab.errors import ConfigError
from adamlab.train.config import load
from adamlab.train.preemption import EXIT_PREEMPTED, Preempted
from adamlab.train.train import EXIT_STOPPED, TrainingStopped, run

USAGE = "--config FILE[:PRESETS] --workdir DIR [--config.a.b=value ...]"


def train(workdir: str, argv) -> None:
  """Load the config from argv (--config and --config.* overrides) and train it."""
  config, rest = load(argv)
  if rest:
    raise ConfigError(f"adamlab train: unrecognized arguments: {' '.join(rest)}")
  try:
    last = run(config, workdir)
  except TrainingStopped as err:
    print(f"adamlab: training stopped: {err}", file=sys.stderr)
    sys.exit(EXIT_STOPPED)
  except Preempted as err:
    print(f"adamlab: preempted: {err}", file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)
  shown = {k: v for k, v in last.items() if not k.startswith("rms/")}
  print(" ".join(f"{k}={v:.4g}" for k, v in shown.items() if isinstance(v, float)))
  print(f"run directory: {workdir} (metrics.jsonl, tb/, checkpoints/, loss.png)")


def main(argv=None) -> None:
  """python -m adamlab.train ARGS: the same as `adamlab train ARGS`."""
  parser = argparse.ArgumentParser(
    prog="python -m adamlab.train", description=f"python -m adamlab.train {USAGE}"
  )
  parser.add_argument("--workdir", required=True)
  try:
    args, extra = parser.parse_known_args(argv)
    train(args.workdir, extra)
  except ConfigError as err:
    print(f"adamlab: error: {err}", file=sys.stderr)
    sys.exit(2)
