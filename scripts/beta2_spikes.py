"""beta2 and loss spikes (Wortsman et al. 2023, seed 000): AdamW vs StableAdamW.

A ViT on Fashion-MNIST with an aggressive lr and a short warmup, b2 in {0.95, 0.99,
0.999} (configs/sweeps/beta2_spikes.py). With a large b2 the second-moment estimate
lags behind a sudden change in the gradients, the update's RMS_t jumps above 1, and
the loss spikes; StableAdamW clips the step when RMS_t > 1. Top: loss per step;
bottom: per-layer RMS_t of each AdamW run, the patch embedding in red. Spikes are
counted with `adamlab.analysis.spikes.detect` (value > 2 x the running median of the
previous 20 steps; consecutive steps are one event).

    python scripts/beta2_spikes.py --quick    # ViT width 64, depth 4, 400 steps
"""

import os

import numpy as np

import common
from adamlab.analysis import spikes

PATCH = "rms/patch_embed.kernel"


def runs_by_setting(args):
  """{(optimizer, b2): dict(row, steps, loss, rms {layer: values})} of the sweep."""
  workdir, rows = common.sweep(args, "beta2_spikes")
  out = {}
  for r in rows:
    logged = common.read_metrics(os.path.join(workdir, r["id"]))  # read once, many keys
    steps, loss = common.series(workdir, r["id"], "loss", logged)
    keys = [k for k in logged[0] if k.startswith("rms/") and k.endswith("kernel")]
    rms = {k[4:]: common.series(workdir, r["id"], k, logged)[1] for k in keys}
    out[(r["optimizer.name"], r["optimizer.b2"])] = dict(row=r, steps=steps, loss=loss, rms=rms)
  return out


def main():
  args = common.parse("beta2_spikes", __doc__, pack=3)
  runs = runs_by_setting(args)
  b2s = sorted({b2 for _, b2 in runs})
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, len(b2s), figsize=(4 * len(b2s), 6.5), sharex=True)
  table = []
  for i, b2 in enumerate(b2s):
    for name, style in (("adamw", "-"), ("stable_adamw", "--")):
      run = runs.get((name, b2))
      if run is None:
        continue
      axes[0][i].plot(run["steps"], run["loss"], style, lw=0.8, label=name)
      if name == "adamw":
        for layer, values in run["rms"].items():
          patch = "patch_embed" in layer
          axes[1][i].plot(
            run["steps"],
            values,
            lw=1.4 if patch else 0.5,
            color="red" if patch else None,
            alpha=1 if patch else 0.4,
          )
      loss_events = spikes.detect(run["loss"])
      patch = run["rms"].get(PATCH[4:])
      tail = run["loss"][-max(1, len(run["loss"]) // 5) :]
      table.append(
        {
          "optimizer": name,
          "b2": b2,
          "loss spikes": len(loss_events),
          "loss spike steps": " ".join(str(int(run["steps"][t])) for t in loss_events),
          "patch-embed RMS spikes": len(spikes.detect(patch)) if patch is not None else "",
          "max patch-embed RMS_t": float(np.nanmax(patch)) if patch is not None else "",
          "final train loss": float(np.mean(tail)),
          "final eval loss": run["row"]["final_eval_loss"],
          "diverged": run["row"]["diverged"],
        }
      )
    axes[0][i].set_title(f"b2 = {b2}")
    axes[0][i].set_yscale("log")
    axes[0][i].legend(fontsize=7)
    axes[1][i].axhline(1.0, color="k", ls=":", lw=0.6)
    axes[1][i].set_yscale("log")
    axes[1][i].set_xlabel("step")
  axes[0][0].set_ylabel("training loss")
  axes[1][0].set_ylabel("AdamW RMS_t per layer (red: patch embedding)")
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "beta2_spikes.png"), dpi=110)
  common.write_numbers(
    args,
    "beta2 and loss spikes: ViT on Fashion-MNIST, AdamW vs StableAdamW",
    [
      "Final train loss: mean of the last 20% of steps. Spike: > 2x the running median of "
      "the previous 20 steps (consecutive steps = one event).",
      "",
      *common.table(list(table[0]), table),
    ],
  )


if __name__ == "__main__":
  main()
