"""Depth transfer (Depth-muP, CompleteP): GPT on GCIDE, muP Adam, loss vs lr per depth.

One panel per depth exponent alpha (0: standard practice, nothing depends on depth;
1/2: Depth-muP, Tensor Programs VI; 1: CompleteP, Dey et al. 2025), one curve per depth
(base depth 2), training loss (mean of the last 20% of logged steps, mean over seeds)
against log2 lr. Reports per arm the optimal log2 lr per depth and seed, its drift
across depths, and whether deeper is better at the base depth's best lr.

    python scripts/depth_transfer.py --quick     # depths 2-16, width 32, 2 CPU cores
    python scripts/depth_transfer.py             # depths 2-32, width 256: a GPU
"""

import numpy as np

import common
from adamlab.analysis import transfer

ARMS = {0.0: "alpha 0: standard", 0.5: "alpha 1/2: Depth-muP", 1.0: "alpha 1: CompleteP"}
LR = common.LR


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
    mine = [r for r in rows if r["model.alpha"] == alpha]
    curves = common.mean_curves(mine, "model.depth")
    per_depth, drifts = common.arm_summary(
      mine, [o for o in found if o["model.alpha"] == alpha], label, "model.depth", seeds
    )
    table += per_depth
    panels.append(
      (
        label,
        {f"depth {d}": c for d, c in curves.items()},
        {f"depth {t['depth']}": t["best log2 lr (mean)"] for t in per_depth},
      )
    )
    losses = [t["loss at the smallest depth's best lr"] for t in per_depth]
    deeper = all(b < a for a, b in zip(losses, losses[1:]))
    lines.append(
      f"- {label}: drift of the optimal log2 lr across depths {depths}: "
      f"**{np.mean(drifts):.2f}** (per seed: {', '.join(f'{d:.2f}' for d in drifts)});"
      f" deeper is better at the base depth's best lr: **{deeper}** "
      f"(losses {', '.join(f'{v:.3f}' for v in losses)})"
    )
  common.write_arm_figure(
    args,
    "depth_transfer",
    "Depth transfer: GPT on GCIDE, muP Adam, per depth exponent",
    panels,
    rows,
    table,
    lines,
  )


if __name__ == "__main__":
  main()
