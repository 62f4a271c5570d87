"""Coordinate-check analysis: log-log slopes of activation size against width or depth,
CSV, plot."""

import csv
import math

import numpy as np


def slopes(rows, step=None, x: str = "width", value: str = "rms"):
  """{layer: fitted slope of log2(value) against log2(x)} at `step` (default: last); x
  is "width" or "depth", value "rms" (or "l1", the mean |x| of older files)."""
  step = max(r["step"] for r in rows) if step is None else step
  by_layer: dict = {}
  for r in rows:
    if r["step"] == step:
      by_layer.setdefault(r["layer"], []).append((math.log2(r[x]), math.log2(r[value])))
  return {
    layer: float(np.polyfit(np.array(pts)[:, 0], np.array(pts)[:, 1], 1)[0])
    for layer, pts in by_layer.items()
    if len(pts) > 1
  }


def write_csv(rows, path) -> None:
  with open(path, "w", newline="") as f:
    fields = ["width", "depth", "step", "layer", "rms", "l1"]
    w = csv.DictWriter(f, fieldnames=[k for k in fields if any(k in r for r in rows)])
    w.writeheader()
    w.writerows(rows)


def read_csv(path):
  with open(path) as f:
    types = dict(width=int, depth=int, step=int, layer=str, rms=float, l1=float)
    return [{k: types[k](v) for k, v in r.items()} for r in csv.DictReader(f)]


def coord_check_rows(result) -> list:
  """The rows (width, step, layer, rms) of an `adamlab.optim.coord_check` result."""
  return [
    dict(width=w, step=t, layer=layer, rms=float(result.rms[t, i, j]))
    for t in range(result.rms.shape[0])
    for i, w in enumerate(result.widths)
    for j, layer in enumerate(result.layers)
  ]


def plot_coord_check(result, path, title: str = "") -> None:
  """Plot an `adamlab.optim.coord_check` result: a panel per step, RMS against width."""
  plot(coord_check_rows(result), path, title)


def plot(rows, path, title: str = "", x: str = "width", value: str = "rms") -> None:
  """A panel per step: log2 width (or depth) against `value` (log scale), a line per
  layer."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = sorted({r["step"] for r in rows})
  layers = sorted({r["layer"] for r in rows})
  fig, axes = plt.subplots(
    1, len(steps), figsize=(3.2 * len(steps), 3.2), sharey=True, squeeze=False
  )
  cmap = plt.get_cmap("viridis")
  for ax, step in zip(axes[0], steps):
    for i, layer in enumerate(layers):
      pts = sorted((r[x], r[value]) for r in rows if r["step"] == step and r["layer"] == layer)
      ax.plot(
        [math.log2(w) for w, _ in pts],
        [v for _, v in pts],
        marker=".",
        color=cmap(i / max(1, len(layers) - 1)),
        label=layer,
      )
    ax.set_yscale("log")
    ax.set_title(f"step {step}")
    ax.set_xlabel(f"log2 {x}")
  axes[0][0].set_ylabel("mean |x|" if value == "l1" else "RMS")
  axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
