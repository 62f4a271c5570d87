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

from adamlab.train.config import load
from adamlab.train import run as run_one, run_pack
from common import machine


def configs(width, k, steps):
  return [
    load(
      [
        "--config=configs/mlp.py:mup,adamw",
        f"--config.model.width={width}",
        f"--config.steps={steps}",
        f"--config.optimizer.learning_rate={lr}",
        "--config.optimizer.warmup_steps=10",
        f"--config.eval_every={steps}",
        "--config.eval_batches=1",
        f"--config.log_every={steps}",
        f"--config.checkpoint_every={steps}",
      ]
    )[0]
    for lr in [2.0**-e for e in range(6, 6 + k)]
  ]


def timed(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def run(widths=(32, 64, 128, 256), pack=4, steps=100, repeats=2, progress=None):
  """Sequential and packed wall seconds per width, min and median over repeats."""
  quiet = lambda *a, **k: None
  rows = []
  for width in widths:
    cs = configs(width, pack, steps)
    seq, packed = [], []
    for _ in range(repeats):
      with tempfile.TemporaryDirectory() as d:
        seq.append(timed(lambda: [run_one(c, f"{d}/s{i}", quiet) for i, c in enumerate(cs)]))
        packed.append(timed(lambda: run_pack(cs, [f"{d}/p{i}" for i in range(len(cs))], quiet)))
    s, p = statistics.median(seq), statistics.median(packed)
    rows.append(
      dict(
        width=width,
        sequential_s=seq,
        packed_s=packed,
        sequential_runs_per_h=3600 * len(cs) / s,
        packed_runs_per_h=3600 * len(cs) / p,
        speedup=s / p,
        speedup_min=min(seq) / min(packed),
      )
    )
    if progress:
      progress(row_line(rows[-1]))
  return dict(machine=machine(), pack=pack, steps=steps, repeats=repeats, rows=rows)


def row_line(r) -> str:
  return (
    f"| {r['width']} | {r['sequential_runs_per_h']:.0f} | {r['packed_runs_per_h']:.0f} | "
    f"{r['speedup']:.2f}x | {r['speedup_min']:.2f}x |"
  )


def header(result) -> list:
  return [
    f"Sweep packing, {result['machine']}; K = {result['pack']} runs of "
    f"{result['steps']} steps (TP5 MLP, Fashion-MNIST), {result['repeats']} repeat(s); "
    "runs/h from the median times",
    "",
    "| width | sequential runs/h | packed runs/h | speedup (median) | speedup (min) |",
    "|---|---|---|---|---|",
  ]


def report(result) -> str:
  return "\n".join(header(result) + [row_line(r) for r in result["rows"]])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--widths", default="32,64,128,256")
  parser.add_argument("--pack", type=int, default=4)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  # Rows are printed as each width finishes, as before.
  print(
    "\n".join(
      header(dict(machine=machine(), pack=args.pack, steps=args.steps, repeats=args.repeats))
    ),
    flush=True,
  )
  return run(
    [int(w) for w in args.widths.split(",")],
    args.pack,
    args.steps,
    args.repeats,
    progress=lambda line: print(line, flush=True),
  )["rows"]


if __name__ == "__main__":
  main()
