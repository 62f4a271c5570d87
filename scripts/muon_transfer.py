"""Muon width transfer: GPT on GCIDE, training loss vs lr per width, five arms.

One panel per arm (`configs/sweeps/muon_transfer.py`): Muon with no shape factor, with
the spectral factor, with Moonshot's RMS matching (each with one global lr), muP-Muon
from the parametrization table, and muP AdamW as the reference. One curve per width,
training loss (mean of the last 20% of logged steps, mean over seeds) against log2 lr.
Reports per arm the optimal log2 lr per width and seed and its drift across widths,
whether wider is better at the smallest width's best lr, and each arm's best loss
against muP AdamW's at the same width and steps.

    python scripts/muon_transfer.py --quick     # widths 32-256, 2 CPU cores
    python scripts/muon_transfer.py             # widths 128-2048: a GPU
"""

import numpy as np

import common
from adamlab.analysis import transfer

ARM = ("optimizer.name", "parametrization", "optimizer.muon_shape")
LABELS = {
  ("muon", "sp", "none"): "Muon, no shape factor",
  ("muon", "sp", "spectral"): "Muon, spectral factor",
  ("muon", "sp", "rms"): "Muon, RMS-matched (0.2)",
  ("muon", "mup", "spectral"): "muP-Muon (table)",
  ("adamw", "mup", "spectral"): "muP AdamW",
}
WIDTH = "model.width"


def arm_of(row) -> tuple:
  return tuple(row[f] for f in ARM)


def main():
  args = common.parse("muon_transfer", __doc__, pack=7)
  workdir, rows = common.sweep(args, "muon_transfer")
  for r in rows:
    r["train_loss"] = common.tail_loss(workdir, r["id"])
  found = transfer.optima(rows, common.LR, "train_loss", by=ARM + (WIDTH, "seed"))
  seeds = sorted({r["seed"] for r in rows})
  panels, table, lines, best = [], [], [], {}
  for arm, label in LABELS.items():
    mine = [r for r in rows if arm_of(r) == arm]
    per_width, drifts = common.arm_summary(
      mine, [o for o in found if arm_of(o) == arm], label, WIDTH, seeds
    )
    table += per_width
    best[arm] = {t["width"]: t["best loss (mean)"] for t in per_width}
    panels.append(
      (
        label,
        {f"width {w}": c for w, c in common.mean_curves(mine, WIDTH).items()},
        {f"width {t['width']}": t["best log2 lr (mean)"] for t in per_width},
      )
    )
    losses = [t["loss at the smallest width's best lr"] for t in per_width]
    wider = all(b < a for a, b in zip(losses, losses[1:]))
    lines.append(
      f"- {label}: drift of the optimal log2 lr across widths: **{np.mean(drifts):.2f}** "
      f"(per seed: {', '.join(f'{d:.2f}' for d in drifts)}); wider is better at the "
      f"smallest width's best lr: **{wider}** (losses {', '.join(f'{v:.3f}' for v in losses)})"
    )
  reference = best[("adamw", "mup", "spectral")]
  against = [
    {"arm": LABELS[arm], **{f"width {w}": best[arm][w] - reference[w] for w in sorted(reference)}}
    for arm in LABELS
  ]
  common.write_arm_figure(
    args,
    "muon_transfer",
    "Muon width transfer: GPT on GCIDE",
    panels,
    rows,
    table,
    lines,
    more=[
      "",
      "Best loss (mean over seeds) minus muP AdamW's, at each width (negative: better "
      "than AdamW at equal steps):",
      "",
      *common.table_lines(against),
    ],
  )


if __name__ == "__main__":
  main()
