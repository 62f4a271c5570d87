"""Train the runs of a pack spec as one vmapped program: python -m adamlab.sweep.pack SPEC.

SPEC (written by the sweep runner) is {"base": "configs/x.py:presets", "runs":
[{"workdir": ..., "overrides": {field: value}}, ...]}; the runs may differ only in
scalar optimizer hyperparameters (see adamlab.train.run_pack).
"""

import json
import sys

from adamlab.train.config import load
from adamlab.sweep.grid import flags
from adamlab.train.preemption import EXIT_PREEMPTED, Preempted
from adamlab.train.train import EXIT_STOPPED, TrainingStopped, run_pack


def main(spec_path: str):
  with open(spec_path) as f:
    spec = json.load(f)
  configs = [
    load(["--config=" + spec["base"]] + flags(run["overrides"]))[0] for run in spec["runs"]
  ]
  try:
    run_pack(configs, [run["workdir"] for run in spec["runs"]])
  except TrainingStopped as err:  # every run of the pack: each says why in stopped.txt
    print(f"adamlab: training stopped: {err}", file=sys.stderr)
    sys.exit(EXIT_STOPPED)
  except Preempted as err:
    print(f"adamlab: preempted: {err}", file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
  main(sys.argv[1])
