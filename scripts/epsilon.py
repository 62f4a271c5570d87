"""Epsilon underflow and Adam-atan2 (Everett et al. 2024): final loss vs eps per width.

muP Adam on the TP5 MLP and Fashion-MNIST (configs/sweeps/epsilon.py). Left: one eps
for every layer; the eps at which the loss starts to suffer should fall as width
grows, because gradients shrink with width. Right: eps scaled per layer with its
gradient scale, which should hold the curves in place. Dashed: Adam-atan2, which
has no eps, at each width.

    python scripts/epsilon.py --quick     # widths 64-1024, 2 CPU cores
    python scripts/epsilon.py             # widths 256-16384
"""

import math

import common
from adamlab.analysis import transfer

ARMS = {False: "fixed eps", True: "eps scaled with width"}


def main():
  args = common.parse("epsilon", __doc__, pack=11)
  workdir, rows = common.sweep(args, "epsilon")
  atan_dir, atan_rows = common.sweep(args, "epsilon", tag="atan2_", preset="atan2")
  for d, rs in ((workdir, rows), (atan_dir, atan_rows)):
    for r in rs:
      r["train_loss"] = common.tail_loss(d, r["id"])
  atan = {r["model.width"]: r["train_loss"] for r in atan_rows}
  found = transfer.optima(
    rows, "optimizer.eps", "train_loss", by=("optimizer.scale_eps", "model.width"), base=10
  )
  panels, summary = [], []
  for scaled, label in ARMS.items():
    curves = common.width_curves(
      [r for r in rows if r["optimizer.scale_eps"] == scaled], "optimizer.eps", math.log10
    )
    widths = sorted(curves)
    best = {o["model.width"]: o["log_x"] for o in found if o["optimizer.scale_eps"] == scaled}
    panels.append((label, curves, best, atan))
    for w in widths:
      losses = dict(zip(*curves[w]))
      o = next(o for o in found if o["optimizer.scale_eps"] == scaled and o["model.width"] == w)
      summary.append(
        {
          "eps": label,
          "width": w,
          "best log10 eps": o["log_x"],
          "best loss": o["train_loss"],
          "loss @ eps 1e-8": losses.get(-8.0),
          "loss @ eps 1e-4": losses.get(-4.0),
          "adam-atan2": atan.get(w),
          "atan2 - best": atan.get(w, math.nan) - o["train_loss"],
        }
      )
  common.plot_losses(
    f"{args.out}/epsilon.png",
    panels,
    "log10 eps",
    [r["train_loss"] for r in rows + atan_rows],
    top=3,
  )
  common.write_numbers(
    args,
    "Epsilon underflow and Adam-atan2: MLP, muP Adam",
    [
      "Training loss (mean of the last 20% of logged steps) per eps; best log10 eps: the "
      "vertex of a parabola through the best grid point and its neighbours. "
      "adam-atan2: the same model and lr with Adam-atan2 (a=1.27, b=1), which has no eps.",
      "",
      *common.table(list(summary[0]), summary),
    ],
  )


if __name__ == "__main__":
  main()
