"""Sweep packing: runs/hour of K runs trained as one vmapped program vs one at a time.

    python benchmarks/sweep_packing.py [--widths 32,64,128,256] [--pack 4] [--steps 100]

The runs are what a learning-rate sweep trains: the TP5 MLP on Fashion-MNIST with
Adam, K learning rates, at each width. Both sides go through the trainer end to end
(build, compile, train, checkpoint, metrics), in one process; the ratio is packed
runs/hour over sequential runs/hour. Small models leave a device idle, which is what
packing fills.
"""

import argparse
import statistics
import tempfile
import time

from adamlab.config import load
from adamlab.train import run, run_pack
from common import machine


def configs(width, k, steps):
  return [load(["--config=configs/mlp.py:mup,adamw", f"--config.model.width={width}",
                f"--config.steps={steps}", f"--config.optimizer.learning_rate={lr}",
                "--config.optimizer.warmup_steps=10", f"--config.eval_every={steps}",
                "--config.eval_batches=1", f"--config.log_every={steps}",
                f"--config.checkpoint_every={steps}"])[0]
          for lr in [2.0 ** -e for e in range(6, 6 + k)]]


def timed(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--widths", default="32,64,128,256")
  parser.add_argument("--pack", type=int, default=4)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  quiet = lambda *a, **k: None
  print(f"# sweep packing, {machine()}; K = {args.pack} runs of {args.steps} steps")
  print("width | sequential runs/h | packed runs/h | speedup (median of "
        f"{args.repeats})")
  rows = []
  for width in [int(w) for w in args.widths.split(",")]:
    cs = configs(width, args.pack, args.steps)
    seq, packed = [], []
    for _ in range(args.repeats):
      with tempfile.TemporaryDirectory() as d:
        seq.append(timed(lambda: [run(c, f"{d}/s{i}", quiet) for i, c in enumerate(cs)]))
        packed.append(timed(lambda: run_pack(cs, [f"{d}/p{i}" for i in range(len(cs))], quiet)))
    s, p = statistics.median(seq), statistics.median(packed)
    rows.append(dict(width=width, sequential_runs_per_h=3600 * len(cs) / s,
                     packed_runs_per_h=3600 * len(cs) / p, speedup=s / p))
    print(f"{width} | {rows[-1]['sequential_runs_per_h']:.0f} | "
          f"{rows[-1]['packed_runs_per_h']:.0f} | {s / p:.2f}x", flush=True)
  return rows


if __name__ == "__main__":
  main()
