"""Depth transfer (Depth-muP, CompleteP): GPT on GCIDE, muP Adam, loss vs lr per depth.

One panel per depth exponent alpha (0: standard practice, nothing depends on depth;
1/2: Depth-muP, Tensor Programs VI; 1: CompleteP, Dey et al. 2025), one curve per depth
(base depth 2), training loss (mean of the last 20% of logged steps, mean over seeds)
against log2 lr. Reports per arm the optimal log2 lr per depth and seed, its drift
across depths, and whether deeper is better at the base depth's best lr.

    python scripts/depth_transfer.py --quick     # depths 2-16, width 32, 2 CPU cores
    python scripts/depth_transfer.py             # depths 2-32, width 256: a GPU
"""

import math

import numpy as np

import common
from adamlab.analysis import transfer

ARMS = {0.0: "alpha 0: standard", 0.5: "alpha 1/2: Depth-muP", 1.0: "alpha 1: CompleteP"}
LR = "optimizer.learning_rate"


def mean_curves(rows, alpha):
  """{depth: ([log2 lr], [train loss, mean over seeds])} of one arm."""
  mine = [r for r in rows if r["model.alpha"] == alpha]
  out = {}
  for depth in sorted({r["model.depth"] for r in mine}):
    lrs = sorted({r[LR] for r in mine if r["model.depth"] == depth})
    losses = [
      np.mean([r["train_loss"] for r in mine if r["model.depth"] == depth and r[LR] == lr])
      for lr in lrs
    ]
    out[depth] = ([math.log2(lr) for lr in lrs], losses)
  return out


def arm_summary(rows, found, alpha, depths, seeds):
  """Per-depth optimum (mean and spread over seeds) and per-seed drift of one arm."""
  best = {(o["model.depth"], o["seed"]): o for o in found if o["model.alpha"] == alpha}
  table, drifts = [], []
  for seed in seeds:
    drifts.append(transfer.drift([best[d, seed]["log_x"] for d in depths if (d, seed) in best]))
  base_lr = np.mean([best[depths[0], s][LR] for s in seeds])  # the base depth's optimum
  for d in depths:
    xs = [best[d, s]["log_x"] for s in seeds if best.get((d, s), {}).get("log_x") is not None]
    at_base = [
      r["train_loss"]
      for r in rows
      if r["model.alpha"] == alpha
      and r["model.depth"] == d
      and math.isclose(r[LR], _nearest(rows, base_lr))
    ]
    table.append(
      {
        "arm": ARMS[alpha],
        "depth": d,
        "best log2 lr (mean)": np.mean(xs),
        "spread (max - min over seeds)": np.ptp(xs) if xs else math.nan,
        "at edge": any(best[d, s]["at_edge"] for s in seeds if (d, s) in best),
        "best loss (mean)": np.mean([best[d, s]["train_loss"] for s in seeds]),
        "loss at base depth's best lr": np.mean(at_base) if at_base else math.nan,
      }
    )
  return table, drifts


def _nearest(rows, lr):
  grid = sorted({r[LR] for r in rows})
  return min(grid, key=lambda g: abs(math.log2(g) - math.log2(lr)))


def main():
  args = common.parse("depth_transfer", __doc__, pack=7)
  workdir, rows = common.sweep(args, "depth_transfer")
  for r in rows:
    r["train_loss"] = common.tail_loss(workdir, r["id"])
  found = transfer.optima(rows, LR, "train_loss", by=("model.alpha", "model.depth", "seed"))
  depths = sorted({r["model.depth"] for r in rows})
  seeds = sorted({r["seed"] for r in rows})
  panels, table, lines = [], [], []
  for alpha, label in ARMS.items():
    curves = mean_curves(rows, alpha)
    per_depth, drifts = arm_summary(rows, found, alpha, depths, seeds)
    table += per_depth
    panels.append(
      (
        label,
        {f"depth {d}": c for d, c in curves.items()},
        {f"depth {t['depth']}": t["best log2 lr (mean)"] for t in per_depth},
      )
    )
    losses = [t["loss at base depth's best lr"] for t in per_depth]
    deeper = all(b < a for a, b in zip(losses, losses[1:]))
    lines.append(
      f"- {label}: drift of the optimal log2 lr across depths {depths}: "
      f"**{np.mean(drifts):.2f}** (per seed: {', '.join(f'{d:.2f}' for d in drifts)});"
      f" deeper is better at the base depth's best lr: **{deeper}** "
      f"(losses {', '.join(f'{v:.3f}' for v in losses)})"
    )
  common.plot_losses(
    f"{args.out}/depth_transfer.png",
    panels,
    "log2 learning rate",
    [r["train_loss"] for r in rows],
    top=1.6,
  )
  common.write_numbers(
    args,
    "Depth transfer: GPT on GCIDE, muP Adam, per depth exponent",
    [
      "Optimal log2 lr per arm and depth: the vertex of a parabola through the best grid "
      "point and its neighbours, per seed, then the mean over seeds and its spread. "
      "Training loss: mean of the last 20% of logged steps.",
      "",
      *common.table(list(table[0]), table),
      "",
      *lines,
    ],
  )


if __name__ == "__main__":
  main()
