"""Plots of one run directory: loss, learning rate and per-layer RMS_t."""

import math
import os

from adamlab.train import metrics

# Legend entries on rms.png: more than this and a reader can no longer tell the lines apart.
MAX_LABELS = 6


def read_metrics(workdir: str):
  return metrics.read(os.path.join(workdir, "metrics.jsonl"))


def series(rows, key) -> tuple:
  """(steps, values) of one metric, over the rows where it is a finite number."""
  pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
  return [p[0] for p in pts], [p[1] for p in pts]


def peak(rows, key) -> float:
  """Largest value of a metric; inf when it overflowed (the writer stores that as "inf")."""
  vals = [r[key] for r in rows if key in r]
  if "inf" in vals:
    return math.inf
  nums = [v for v in vals if isinstance(v, (int, float))]
  return max(nums) if nums else -math.inf


def rms_labels(rows, top: int = 5) -> list:
  """The rms/ keys rms.png names in its legend, highest peak first.

  The patch embedding (a key containing "patch") is always named, as it is the ViT layer
  whose RMS_t spikes first; the other slots go to the `top` layers with the highest peak.
  """
  keys = sorted({k for r in rows for k in r if k.startswith("rms/")})
  peaks = {k: peak(rows, k) for k in keys}
  patch = [k for k in keys if "patch" in k[4:]][:MAX_LABELS]
  rest = sorted((k for k in keys if k not in patch), key=lambda k: -peaks[k])
  chosen = patch + rest[: max(0, min(top, MAX_LABELS - len(patch)))]
  return sorted(chosen, key=lambda k: -peaks[k])


def rms_figure(rows):
  """Per-layer RMS_t: named layers (rms_labels) in colour, the others thin, grey, unnamed."""
  import matplotlib.pyplot as plt

  keys = sorted({k for r in rows for k in r if k.startswith("rms/")})
  named = rms_labels(rows)
  fig, ax = plt.subplots(figsize=(9, 4))
  for k in keys:
    if k not in named:
      ax.plot(*series(rows, k), lw=0.5, color="0.6", alpha=0.6, zorder=1)
  colours = plt.get_cmap("tab10").colors
  for i, k in enumerate(named):
    p = peak(rows, k)
    ax.plot(
      *series(rows, k),
      lw=1.4,
      color=colours[i % len(colours)],
      zorder=2,
      label=f"{k[4:]} (max {p:.3g})",
    )
  ax.axhline(1.0, color="k", ls="--", lw=0.6)
  ax.set_xlabel("step")
  ax.set_ylabel("RMS_t per layer")
  ax.set_yscale("log")
  # Outside the axes: inside, the legend would hide the spikes it is there to name.
  ax.legend(
    fontsize=7,
    loc="upper left",
    bbox_to_anchor=(1.01, 1.0),
    frameon=False,
    title=f"{len(named)} of {len(keys)} layers",
    title_fontsize=7,
  )
  return fig


def _loss_figure(rows, title: str):
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(*series(rows, "loss"), lw=0.8, label="train")
  if any("eval_loss" in r for r in rows):
    ax.plot(*series(rows, "eval_loss"), marker="o", label="eval")
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_yscale("log")
  ax.legend()
  ax.set_title(title)
  return fig


def _lr_figure(rows):
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 3))
  ax.plot(*series(rows, "lr"))
  ax.set_xlabel("step")
  ax.set_ylabel("learning rate")
  return fig


def plot_run(workdir: str) -> list:
  """Write loss.png, lr.png and rms.png (when the optimizer records RMS_t); return the paths."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = read_metrics(workdir)
  figures = {"loss.png": _loss_figure(rows, os.path.basename(os.path.normpath(workdir)))}
  if any("lr" in r for r in rows):
    figures["lr.png"] = _lr_figure(rows)
  if any(k.startswith("rms/") for r in rows for k in r):
    figures["rms.png"] = rms_figure(rows)
  written = []
  for name, fig in figures.items():
    path = os.path.join(workdir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
  return written
