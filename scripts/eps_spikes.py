"""Which eps removes Adam's loss spikes, and at what cost; can Adam-atan2's (a, b) do the same.

The two memorization regimes of scripts/loss_spikes.py (full batch and minibatches of a
small Fashion-MNIST subset, TP5 MLP, constant lr 1e-3, no warmup, no clipping, no
decay), with AdamW and StableAdamW at eps in {1e-10, 1e-8, 1e-7, 1e-6, 1e-5} x b2 in
{0.95, 0.99, 0.999}, and Adam-atan2 at (a, b) = (1.27, 1) and a = b in {0.25, 1, 4}, 3
seeds each (configs/sweeps/loss_spikes.py, presets `eps` and `atan2`).

Per cell: loss spikes per run (the loss-spike figure's detector), their median height,
the first spike's step, the final training loss (mean of the last 10% of steps), the
final held-out loss, and the first step with a training loss below 1e-3.

With --width, eps across width in the full-batch regime (preset `width`): AdamW at b2
0.95, 2000 steps, eps in {1e-7, 3e-7, 1e-6} at the base width 64, widths 64 to 512,
3 seeds, under sp (one lr and one eps for every layer), mup (per-layer lr and eps,
`eps_multipliers`: eps shrinks with the width like each layer's gradients), and mup's
lrs with one eps.

Writes experiments/loss_spikes/<quick|full>/eps/ (eps_width/ with --width): runs.csv
and series/ (loss and update RMS of every run), numbers.md, the figures.

    python scripts/eps_spikes.py --quick --workers 2               # full batch: ~10 min
    python scripts/eps_spikes.py --quick --workers 2 --minibatch   # and minibatches: 31 min
    python scripts/eps_spikes.py --quick --workers 2 --width       # across width: ~10 min
"""

import os

import numpy as np

import common
import loss_spikes as ls

EPS_ARMS = ("adamw", "stable_adamw")
REACHED = 1e-3  # "memorized": the first step with a training loss below this


def summarize(runs) -> dict:
  """Per-run measures of a cell's runs (sorted by seed)."""
  m = [ls.measure(r) for r in sorted(runs, key=lambda r: r["seed"])]
  heights = [h for x in m for h in x["heights"]]
  firsts = [x["first"] for x in m if x["first"] is not None]
  reached = []
  for r in sorted(runs, key=lambda r: r["seed"]):
    below = np.flatnonzero(r["loss"] < REACHED)
    reached.append(int(below[0]) + 1 if len(below) else None)
  counts = [len(x["events"]) for x in m]
  held_out = [float(r["final_eval_loss"]) for r in runs if r["final_eval_loss"] != ""]
  hit = [s for s in reached if s is not None]
  return {
    "spikes per run": " ".join(map(str, counts)),
    "mean": float(np.mean(counts)),
    "median height": float(np.median(heights)) if heights else float("nan"),
    "first spike": float(np.mean(firsts)) if firsts else float("nan"),
    f"step to loss < {REACHED:g}": float(np.mean(hit)) if len(hit) == len(m) else float("nan"),
    "reached": f"{len(hit)}/{len(m)}",
    "final train loss": float(np.mean([x["final"] for x in m])),
    "final held-out loss": float(np.mean(held_out)) if held_out else float("nan"),
  }


def cells(runs) -> list:
  """One row per (regime, optimizer, eps or (a, b), b2)."""
  out = []
  for regime in ("full_batch", "minibatch"):
    for r0 in runs:
      key = (r0["regime"], r0["optimizer"], r0["eps"], r0["a"], r0["b"], r0["b2"])
      if r0["regime"] != regime or r0["seed"] != 0:
        continue
      mine = [
        r for r in runs if (r["regime"], r["optimizer"], r["eps"], r["a"], r["b"], r["b2"]) == key
      ]
      setting = f"eps {r0['eps']}" if r0["eps"] else f"a {r0['a']}, b {r0['b']}"
      out.append(
        dict(
          regime=regime, optimizer=r0["optimizer"], setting=setting, b2=r0["b2"], **summarize(mine)
        )
      )
  return out


def plot(args, table, regime) -> None:
  """Heatmaps over setting x b2: spikes per run, and the step the loss first went below
  1e-3, one column per optimizer."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = (*EPS_ARMS, "adam_atan2")
  fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
  for j, name in enumerate(names):
    rows = [t for t in table if t["regime"] == regime and t["optimizer"] == name]
    settings = list(dict.fromkeys(t["setting"] for t in rows))
    b2s = sorted({t["b2"] for t in rows})
    for i, (key, label) in enumerate(
      (
        ("mean", "loss spikes per run (mean of 3 seeds)"),
        (f"step to loss < {REACHED:g}", "first step with loss < 1e-3"),
      )
    ):
      grid = np.full((len(settings), len(b2s)), np.nan)
      for t in rows:
        grid[settings.index(t["setting"]), b2s.index(t["b2"])] = t[key]
      ax = axes[i][j]
      ax.imshow(grid, cmap="viridis", aspect="auto")
      for (a, b), v in np.ndenumerate(grid):
        ax.text(
          b, a, "-" if np.isnan(v) else f"{v:.3g}", ha="center", va="center", color="w", fontsize=8
        )
      ax.set_xticks(range(len(b2s)), [f"b2 {b}" for b in b2s])
      ax.set_yticks(range(len(settings)), settings)
      ax.set_title(f"{name}: {label}", fontsize=9)
  fig.suptitle(f"{regime}: eps and Adam-atan2's (a, b)")
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, f"{regime}.png"), dpi=100)
  plt.close(fig)


def main():
  args = common.parse(
    "loss_spikes",
    __doc__,
    pack=15,
    switches={"--minibatch": "the minibatch regime too", "--width": "eps across width"},
  )
  args.eps, args.max_in_row = True, False
  args.out = os.path.join(args.out, "eps_width" if args.width else "eps")
  os.makedirs(args.out, exist_ok=True)
  if args.width:
    return main_width(args)
  regimes = ("full_batch", "minibatch") if args.minibatch else ("full_batch",)
  ls.run_sweeps(args, regimes)
  runs = ls.read_runs(args.out)
  table = cells(runs)
  for regime in regimes:
    plot(args, table, regime)
  common.write_numbers(
    args,
    "Loss spikes against eps (AdamW, StableAdamW) and Adam-atan2's (a, b)",
    [
      f"Spike: `spikes.events(loss, {', '.join(f'{k}={v}' for k, v in ls.LOSS_SPIKE.items())})`, "
      "as in the loss-spike figure. Spikes per run: seeds 0, 1, 2; mean: their mean. "
      "First spike: mean step over the seeds that spiked. Step to loss < 1e-3: mean over "
      "seeds, when all of them got there (reached: how many did). Final train loss: mean "
      "of the last 10% of steps; held-out loss: the final eval, mean over seeds.",
      "",
      *common.table(list(table[0]), table),
    ],
  )


WIDTH_ARMS = {
  "sp": "sp: one lr, one eps",
  "mup": "mup: lr and eps per layer",
  "mup, one eps": "mup's lr, one eps",
}


def width_arm(run) -> str:
  """The arm of an eps-across-width run: sp, mup, or mup with scale_eps off."""
  if run["parametrization"] == "sp":
    return "sp"
  return "mup" if run["scale_eps"] == "True" else "mup, one eps"


def width_cells(runs) -> list:
  """One row per (arm, width, eps at the base width)."""
  key = lambda r: (width_arm(r), int(r["width"]), float(r["eps"]))
  out = []
  for arm in WIDTH_ARMS:
    for k in sorted({key(r) for r in runs if width_arm(r) == arm}):
      mine = [r for r in runs if key(r) == k]
      out.append(dict(arm=arm, width=k[1], eps=k[2], **summarize(mine)))
  return out


def plot_width(args, table) -> None:
  """Spikes per run against width, one line per eps (at the base width), one panel per arm."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(WIDTH_ARMS), figsize=(14, 4), sharey=True)
  for ax, (arm, title) in zip(axes, WIDTH_ARMS.items()):
    for eps in sorted({t["eps"] for t in table}):
      rows = [t for t in table if (t["arm"], t["eps"]) == (arm, eps)]
      counts = np.array([[int(c) for c in t["spikes per run"].split()] for t in rows])
      mean = counts.mean(1)
      ax.errorbar(
        [t["width"] for t in rows],
        mean,
        [mean - counts.min(1), counts.max(1) - mean],
        marker="o",
        capsize=3,
        label=f"eps {eps:g}",
      )
    ax.set_xscale("log", base=2)
    ax.set(xlabel="width (base width 64)", title=title)
    ax.legend(fontsize=8)
  axes[0].set_ylabel("loss spikes per run (mean; bars: min, max of 3 seeds)")
  fig.suptitle("AdamW, full batch, b2 0.95, 2000 steps: eps across width")
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "width.png"), dpi=100)
  plt.close(fig)


def main_width(args) -> None:
  ls.run_sweeps(args, ("full_batch",))
  table = width_cells(ls.read_runs(args.out))
  plot_width(args, table)
  common.write_numbers(
    args,
    "Loss spikes against eps across width: sp, mup, and mup with one eps",
    [
      "AdamW, full batch, 256 images, b2 0.95, lr 1e-3, 2000 steps, base width 64. sp: "
      "one lr and one eps for every layer (per_layer_lr and scale_eps off); mup: each "
      "layer's lr and eps times `optim.lr_multipliers` and `optim.eps_multipliers`; "
      "mup, one eps: mup's lrs with scale_eps off. eps: the value at the base width. "
      "Columns as in ../eps/numbers.md.",
      "",
      *common.table(list(table[0]), table),
    ],
  )


if __name__ == "__main__":
  main()
