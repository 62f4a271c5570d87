"""Parametrization exponents (Everett et al. 2024): SP, NTK, muP, mean-field with Adam.

Each parametrization applies its per-layer learning-rate exponents (full alignment)
on top of one global lr, swept at every width (configs/sweeps/exponents.py). If the
prescribed exponents are right, the optimal global lr is flat in width. The fitted
exponent of the hidden layers' lr is the prescribed one minus the slope of the
optimal log2 global lr against log2 width. Also: SP with per-layer lrs vs muP, best
loss at each width.

    python scripts/exponents.py --quick     # MLP widths 64-512, 2 CPU cores
    python scripts/exponents.py             # widths 256-4096
"""

import math

import common
from adamlab.analysis import transfer
from adamlab.optim.theory import exponents

LABELS = {"sp": "SP + per-layer lr", "ntk": "NTK", "mup": "muP", "mfp": "mean-field"}
GRID_SIGMA = 1 / math.sqrt(12)  # an optimum known to one log2 grid step


def main():
  args = common.parse("exponents", __doc__, pack=10)
  workdir, rows, found, lines = common.lr_transfer(args, "exponents", LABELS, "MLP, Adam")
  fits = []
  for p, label in LABELS.items():
    mine = [o for o in found if o["parametrization"] == p and o["log_x"] is not None]
    inside = [o for o in mine if not o["at_edge"]]  # an edge optimum is only a bound
    f = transfer.fit_exponent(
      [o["model.width"] for o in inside],
      [o["log_x"] for o in inside],
      sigma=[GRID_SIGMA] * len(inside),
    )
    c = exponents(p, "adam", "full")
    fits.append(
      dict(
        parametrization=label,
        slope=f["slope"],
        stderr=f["stderr"],
        prescribed_c_hidden=c["hidden"].c,
        fitted_c_hidden=c["hidden"].c - f["slope"],
        c_input=c["input"].c,
        c_output=c["output"].c,
        widths_fitted=f["n"],
      )
    )
  best = []
  for w in sorted({r["model.width"] for r in rows}):
    row = dict(width=w)
    for p in ("sp", "mup"):
      losses = [
        r["train_loss"] for r in rows if r["parametrization"] == p and r["model.width"] == w
      ]
      row[f"best {LABELS[p]}"] = min(losses, default=math.nan)
    best.append(row)
  common.write_numbers(
    args,
    "Parametrization exponents: MLP on Fashion-MNIST, Adam",
    [
      *lines,
      "",
      "Fit of the optimal log2 global lr against log2 width (widths whose optimum is inside "
      "the grid; per-point sigma = one grid step / sqrt(12), the error scaled up by the "
      "scatter). lr multiplier of a role = (width / base_width)^-c; fitted_c_hidden = "
      "prescribed - slope.",
      "",
      *common.table(list(fits[0]), fits),
      "",
      "Best training loss at each width, SP with per-layer lrs vs muP:",
      "",
      *common.table(list(best[0]), best),
    ],
  )


if __name__ == "__main__":
  main()
