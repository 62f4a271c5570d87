"""Wider is better (Tensor Programs V): at fixed hyperparameters, loss vs step per width.

Uses the muTransfer sweep (running it if needed): for each parametrization, the
learning rate is the best grid point at the smallest width, and the training-loss
curves of all widths at that lr are compared. Under muP a wider model should be
better at every step; under SP it need not be (its wider models want a smaller lr).

    python scripts/wider_is_better.py --quick
"""

import math
import os

import numpy as np

import common
from adamlab.analysis import transfer

LABELS = {"sp": "SP, one global lr", "mup": "muP"}
WINDOW = 3  # logged points in the trailing mean (one logged point is one batch)


def main():
  args = common.parse("wider_is_better", __doc__, pack=10)
  workdir, rows = common.sweep(args, "mutransfer")
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(LABELS), figsize=(9, 3.6), sharey=True)
  lines, summary = [], []
  for ax, (p, label) in zip(axes, LABELS.items()):
    mine = [r for r in rows if r["parametrization"] == p]
    widths = sorted({r["model.width"] for r in mine})
    at_base = [r for r in mine if r["model.width"] == widths[0] and not r["diverged"]]
    lr = min(at_base, key=lambda r: common.tail_loss(workdir, r["id"]))["optimizer.learning_rate"]
    curves = {}
    for w in widths:
      run = next(r for r in mine if r["model.width"] == w and r["optimizer.learning_rate"] == lr)
      curves[w] = common.series(workdir, run["id"], "loss")
    if len({len(c[0]) for c in curves.values()}) > 1:  # a diverged run stopped early
      n = min(len(c[0]) for c in curves.values())
      curves = {w: (s[:n], v[:n]) for w, (s, v) in curves.items()}
    out = transfer.wider_is_better(curves, window=WINDOW)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    for c, w in zip(colors, widths):
      ax.plot(curves[w][0], transfer.smooth(curves[w][1], WINDOW), color=c, label=f"width {w}")
    for s in [s for s, ok in zip(out["steps"], out["ordered"]) if not ok]:
      ax.axvline(s, color="red", lw=0.5, alpha=0.4)
    ax.set_title(f"{label}, lr 2^{math.log2(lr):.0f}")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    final = {w: float(transfer.smooth(curves[w][1], WINDOW)[-1]) for w in widths}
    summary.append(
      dict(
        parametrization=p,
        log2_lr=math.log2(lr),
        fraction=out["fraction"],
        holds_from=out["holds_from"],
        steps=out["steps"][-1],
        **{f"final@{w}": final[w] for w in widths},
      )
    )
    held = (
      f"at every step from step {out['holds_from']} on"
      if out["holds_from"] is not None
      else "not at the last step"
    )
    lines.append(
      f"- {label} at lr 2^{math.log2(lr):.0f}: loss strictly decreasing in width at "
      f"{out['fraction']:.0%} of {len(out['steps'])} logged steps; {held}"
    )
  axes[0].set_ylabel(f"training loss (trailing mean of {WINDOW} logged steps)")
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "wider_is_better.png"), dpi=110)
  common.write_numbers(
    args,
    "Wider is better at fixed hyperparameters (GPT, Adam)",
    [
      "The lr of each parametrization is its best grid point at the smallest "
      "width; a red line marks a step where some wider model is not lower. fraction: of "
      "logged steps, strictly decreasing in width; holds_from: the first step "
      "from which it is so at every later step.",
      "",
      *common.table(list(summary[0]), summary),
      "",
      *lines,
    ],
  )


if __name__ == "__main__":
  main()
