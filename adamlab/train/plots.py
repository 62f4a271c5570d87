"""Plots of one run directory: loss, learning rate and per-layer RMS_t."""

import os

from adamlab.train import metrics


def read_metrics(workdir: str):
  return metrics.read(os.path.join(workdir, "metrics.jsonl"))


def plot_run(workdir: str) -> list:
  """Write loss.png, lr.png and rms.png (when the optimizer records RMS_t); return the paths."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = read_metrics(workdir)
  written = []

  def series(key):
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]

  def save(fig, name):
    path = os.path.join(workdir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(*series("loss"), lw=0.8, label="train")
  if any("eval_loss" in r for r in rows):
    ax.plot(*series("eval_loss"), marker="o", label="eval")
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_yscale("log")
  ax.legend()
  ax.set_title(os.path.basename(os.path.normpath(workdir)))
  save(fig, "loss.png")

  if any("lr" in r for r in rows):
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(*series("lr"))
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    save(fig, "lr.png")

  rms_keys = sorted({k for r in rows for k in r if k.startswith("rms/")})
  if rms_keys:
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in rms_keys:
      patch = "patch_embed" in k
      ax.plot(*series(k), lw=1.6 if patch else 0.6, color="red" if patch else None,
              alpha=1.0 if patch else 0.5, label=k[4:] if patch else None)
    ax.axhline(1.0, color="k", ls="--", lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel("RMS_t per layer")
    ax.set_yscale("log")
    if any("patch_embed" in k for k in rms_keys):
      ax.legend()
    save(fig, "rms.png")
  return written
