"""Critical batch size (McCandlish et al. 2018; seed 003): where doubling the batch stops
halving the steps.

For each batch size (configs/sweeps/critical_batch.py), the steps its best lr needs
to bring the training loss (trailing mean of 10 logged points) to a target: 25%
above the lowest such loss that every batch size reaches (a level every batch size
passes well before its run ends, so no run is cut off near the target). A least-squares fit of
S(B) = S_min + c / B gives B_crit = c / S_min: below it steps fall ~1/B, above it
they level off at S_min.

    python scripts/critical_batch.py --quick    # MLP width 256, batch 16-1024
"""

import math
import os

import numpy as np

import common
from adamlab.analysis import batch_size, transfer

WINDOW = 10


def main():
  args = common.parse("critical_batch", __doc__, pack=4)
  workdir, rows = common.sweep(args, "critical_batch")
  curves = {r["id"]: common.series(workdir, r["id"], "loss") for r in rows}
  smooth = {i: transfer.smooth(v, WINDOW) for i, (_, v) in curves.items()}
  batches = sorted({r["batch_size"] for r in rows})
  floor = {
    b: min(np.nanmin(smooth[r["id"]]) for r in rows if r["batch_size"] == b) for b in batches
  }
  target = 1.25 * max(floor.values())
  table = []
  for b in batches:
    options = []
    for r in rows:
      if r["batch_size"] == b:
        s = batch_size.steps_to_target(curves[r["id"]][0], curves[r["id"]][1], target, WINDOW)
        options.append((math.inf if s is None else s, r["optimizer.learning_rate"]))
    steps, lr = min(options)
    table.append(
      {
        "batch size": b,
        "steps to target": steps,
        "best log2 lr": math.log2(lr),
        "examples": steps * b if math.isfinite(steps) else math.inf,
      }
    )
  needed = [t["steps to target"] if math.isfinite(t["steps to target"]) else None for t in table]
  fit = batch_size.fit_critical(batches, needed)
  gains = batch_size.doubling_gains(batches, needed)
  plot(batches, needed, fit, os.path.join(args.out, "critical_batch.png"))
  common.write_numbers(
    args,
    "Critical batch size: MLP on Fashion-MNIST, muP Adam",
    [
      f"Target training loss {target:.4f} (25% above the lowest trailing-mean loss every "
      f"batch size reaches).",
      "",
      *common.table(list(table[0]), table),
      "",
      f"Fit S(B) = S_min + c / B: S_min = {fit['s_min']:.1f} steps, "
      f"**B_crit = c / S_min = {fit['b_crit']:.0f}**, rms misfit {fit['residual']:.1f} steps."
      + (
        ""
        if fit["s_min"] > 0 and fit["b_crit"] > 0
        else " The model does not fit these points (S_min or B_crit <= 0): no B_crit."
      ),
      "",
      "Speedup per doubling (2 = perfect, 1 = none):",
      "",
      *common.table(["b_from", "b_to", "speedup"], gains),
    ],
  )


def plot(batches, needed, fit, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5.5, 4))
  pts = [(b, s) for b, s in zip(batches, needed) if s is not None]
  ax.plot(*zip(*pts), "o", label="measured (best lr)")
  b = np.geomspace(batches[0], batches[-1], 100)
  if math.isfinite(fit["s_min"]):
    ax.plot(b, fit["s_min"] * (1 + fit["b_crit"] / b), label=f"fit, B_crit = {fit['b_crit']:.0f}")
    ax.axvline(fit["b_crit"], color="gray", ls=":")
  ax.plot(b, pts[0][1] * pts[0][0] / b, "k--", lw=0.7, label="perfect scaling")
  ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="steps to target loss")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
