"""Loss spikes from Adam's out-of-date second moment (seed 000), on two CPU cores.

Memorizing a small training set drives the gradients towards 0; Adam's second moment v
then decays like b2^t, and when an ordinary gradient comes back the step is far too
large. Two regimes (configs/sweeps/loss_spikes.py): full batch and minibatches of a
small Fashion-MNIST subset, with AdamW, StableAdamW and Adam-atan2 at b2 in {0.95,
0.99, 0.999}, 3 seeds each, plus AdamW with the skip-bad-steps wrapper.

Writes into experiments/loss_spikes/<quick|full>/: <regime>.png (loss curves with
the spikes marked, AdamW's per-layer RMS_t, spikes per run / height / first spike per
arm and b2), numbers.md, runs.csv (one row per run) and series/ (every run's per-step
loss, grad norm, update RMS and per-layer RMS_t, compressed), which
scripts/rms_spikes.py and anyone else can re-analyse.

    python scripts/loss_spikes.py --quick --workers 2        # 2 CPU cores
    python scripts/loss_spikes.py --quick --workers 2 --vit  # the ViT regime, into <mode>/vit/
    python scripts/loss_spikes.py --quick --workers 2 --max-in-row  # skip, max 10 in a row

scripts/eps_spikes.py runs the same regimes over an eps x b2 grid with these functions.
"""

import os

import numpy as np

import common
from adamlab.analysis import spikes

REGIMES = ("full_batch", "minibatch")  # the default; --vit runs ("vit",) alone
ARMS = ("adamw", "stable_adamw", "adam_atan2", "adamw+skip")
# A loss spike: above 2x the running median of the last 20 steps plus 0.1 nats (the
# memorized loss sits near 0), points within 10 steps of each other are one event.
LOSS_SPIKE = dict(k=2.0, window=20, min_history=5, floor=0.1, gap=10)
SERIES = ("loss", "grad_norm", "update_rms", "spike_skips")


def arm(row) -> str:
  return row["optimizer.name"] + ("+skip" if row.get("optimizer.skip_spikes_k") else "")


def presets(args, regime) -> list:
  """[(sweep preset, output tag)] of a regime: the arms, then AdamW + skip (not for the ViT);
  with --max-in-row, only AdamW + skip with skip_spikes_max_in_row."""
  if args.max_in_row:
    return [(regime + ",skip,max_in_row", f"{regime}_skip_max_in_row_")]
  if getattr(args, "width", False):  # (scripts/eps_spikes.py --width)
    return [(regime + ",width", f"{regime}_width_")]
  if getattr(args, "eps", False):  # (scripts/eps_spikes.py)
    return [(regime + ",eps", f"{regime}_eps_"), (regime + ",atan2", f"{regime}_atan2_")]
  return [(regime, f"{regime}_")] + (
    [] if regime == "vit" else [(regime + ",skip", f"{regime}_skip_")]
  )


def run_sweeps(args, regimes) -> list:
  """Run (or find) every sweep; save each run's series; returns runs.csv's rows."""
  eps = getattr(args, "eps", False)  # (scripts/eps_spikes.py)
  table = []
  for regime in regimes:
    for preset, tag in presets(args, regime):
      workdir, rows = common.sweep(args, "loss_spikes", tag=tag, preset=preset)
      for r in rows:
        logged = common.read_metrics(os.path.join(workdir, r["id"]))
        arrays = {
          k: common.series(workdir, r["id"], k, logged)[1].astype(np.float32)
          for k in logged[0]
          if k in SERIES or k.startswith("rms/")
        }
        if eps:  # 252 runs: the loss, and the update RMS in float16
          arrays = {"loss": arrays["loss"], "update_rms": arrays["update_rms"].astype(np.float16)}
        if regime == "vit":  # ~20 RMS_t series a run: weight matrices and embeddings only,
          arrays = {
            k: v.astype(np.float16) if k.startswith("rms/") else v  # in float16
            for k, v in arrays.items()
            if not k.startswith("rms/") or k.endswith("kernel") or spikes.depth(k[4:]) == 0
          }
        path = common.save_series(args.out, regime, r["id"], arrays)
        table.append(
          {
            "regime": regime,
            "optimizer": arm(r),
            "b2": r["optimizer.b2"],
            **(
              {
                "eps": r.get("optimizer.eps", ""),
                "a": r.get("optimizer.a", ""),
                "b": r.get("optimizer.b", ""),
                "parametrization": r.get("parametrization", "sp"),
                "scale_eps": r.get("optimizer.scale_eps", True),
                "width": r.get("model.width", ""),
                "final_eval_loss": r["final_eval_loss"],
              }
              if eps
              else {}
            ),
            "seed": r["seed"],
            "lr": logged[0]["lr"],
            "steps": len(arrays["loss"]),
            "diverged": r["diverged"],
            "run_id": r["id"],
            "series": path,
          }
        )
  common.write_csv(os.path.join(args.out, "runs.csv"), table)
  return table


def read_runs(out: str) -> list:
  """Every run of runs.csv with its series: [dict(row fields, loss=..., rms={layer: ...})]."""
  runs = []
  for row in common.read_csv(os.path.join(out, "runs.csv")):
    with np.load(os.path.join(out, row["series"])) as z:
      run = dict(
        row,
        b2=float(row["b2"]),
        seed=int(row["seed"]),
        **{k: z[k] for k in z.files if not k.startswith("rms/")},
      )
      run["rms"] = {k[4:]: z[k] for k in z.files if k.startswith("rms/")}
    runs.append(run)
  return runs


def measure(run) -> dict:
  """Loss spike events of one run, their heights and the final loss."""
  found = spikes.events(run["loss"], **LOSS_SPIKE)
  loss = run["loss"]
  tail = loss[-max(1, len(loss) // 10) :]
  return dict(
    events=found,
    heights=spikes.heights(loss, found),
    first=found[0][0] + 1 if found else None,  # logged steps start at 1
    final=float(np.mean(tail)) if np.all(np.isfinite(tail)) else float("inf"),
    skips=int(run["spike_skips"][-1]) if "spike_skips" in run else 0,
  )


def cells(runs, regimes) -> list:
  """One row per (regime, arm, b2): spikes per run over seeds, heights, first spike."""
  out = []
  for regime in regimes:
    for name in ARMS:
      for b2 in sorted({r["b2"] for r in runs}):
        mine = [r for r in runs if (r["regime"], r["optimizer"], r["b2"]) == (regime, name, b2)]
        if not mine:
          continue
        m = [measure(r) for r in sorted(mine, key=lambda r: r["seed"])]
        counts = [len(x["events"]) for x in m]
        heights = [h for x in m for h in x["heights"]]
        firsts = [x["first"] for x in m if x["first"] is not None]
        out.append(
          {
            "regime": regime,
            "optimizer": name,
            "b2": b2,
            "seeds": len(m),
            "spikes per run": " ".join(map(str, counts)),
            "mean": float(np.mean(counts)),
            "std": float(np.std(counts)),
            "runs with >= 3": sum(c >= 3 for c in counts),
            "median height": float(np.median(heights)) if heights else float("nan"),
            "max height": float(np.max(heights)) if heights else float("nan"),
            "first spike (mean step)": float(np.mean(firsts)) if firsts else float("nan"),
            "runs that spiked": len(firsts),
            "final loss (mean)": float(np.mean([x["final"] for x in m])),
            "skipped steps": " ".join(str(x["skips"]) for x in m),
          }
        )
  return out


def plot(args, runs, table, regime) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  b2s = sorted({r["b2"] for r in runs})
  cols = max(3, len(b2s))  # the bottom row has three summary panels
  fig, axes = plt.subplots(3, cols, figsize=(5 * cols, 10))
  colors = dict(zip(ARMS, ("C0", "C1", "C2", "C3")))
  for j, b2 in enumerate(b2s):
    seed0 = {
      r["optimizer"]: r for r in runs if (r["regime"], r["b2"], r["seed"]) == (regime, b2, 0)
    }
    ax = axes[0][j]
    for name, run in sorted(seed0.items()):
      steps = np.arange(1, len(run["loss"]) + 1)
      ax.plot(steps, run["loss"], lw=0.6, color=colors[name], label=name)
      starts = [a for a, _ in measure(run)["events"]]
      ax.plot(steps[starts], run["loss"][starts], "v", color=colors[name], ms=5)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_title(f"{regime}, b2 = {b2}, seed 0 (triangles: spikes)")
    ax.legend(fontsize=7)
    run = seed0.get("adamw")
    if run is not None:
      many = len(run["rms"]) > 4  # a ViT: the patch embedding in red, the rest in grey
      for layer, values in sorted(run["rms"].items(), key=lambda kv: spikes.depth(kv[0])):
        style = (
          dict(color="red", lw=0.9, label=layer)
          if "patch" in layer
          else dict(color="0.6", lw=0.3, alpha=0.5)
          if many
          else dict(lw=0.5, label=layer)
        )
        axes[1][j].plot(np.arange(1, len(values) + 1), values, **style)
      axes[1][j].axhline(1.0, color="k", ls=":", lw=0.6)
      axes[1][j].set_yscale("log")
      axes[1][j].set_title(
        "AdamW RMS_t per layer, seed 0" + (" (red: patch embedding)" if many else "")
      )
      axes[1][j].legend(fontsize=7)
    axes[1][j].set_xlabel("step")
  mine = [t for t in table if t["regime"] == regime]
  for ax, key, label in (
    (axes[2][0], "mean", "loss spikes per run (mean, std over seeds)"),
    (axes[2][1], "median height", "median spike height (nats)"),
    (axes[2][2], "first spike (mean step)", "first spike (mean step)"),
  ):
    width = 0.8 / len(ARMS)
    for i, name in enumerate(ARMS):
      rows = {t["b2"]: t for t in mine if t["optimizer"] == name}
      x = np.arange(len(b2s)) + i * width
      y = [rows[b]["mean" if key == "mean" else key] if b in rows else np.nan for b in b2s]
      err = [rows[b]["std"] if b in rows else 0 for b in b2s] if key == "mean" else None
      ax.bar(x, np.nan_to_num(y), width, yerr=err, color=colors[name], label=name)
    ax.set_xticks(np.arange(len(b2s)) + 0.4 - width / 2, [f"b2 {b}" for b in b2s])
    ax.set_title(label, fontsize=9)
  axes[2][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, f"{regime}.png"), dpi=100)
  plt.close(fig)


def main():
  args = common.parse(
    "loss_spikes",
    __doc__,
    pack=3,
    switches={
      "--vit": "the ViT regime (AdamW, StableAdamW) into <mode>/vit/",
      "--max-in-row": "AdamW + skip, a step accepted after 10 skips, into <mode>/max_in_row/",
    },
  )
  regimes = ("vit",) if args.vit else REGIMES
  for switch in ("vit", "max_in_row"):
    if getattr(args, switch):
      args.out = os.path.join(args.out, switch)
  run_sweeps(args, regimes)
  runs = read_runs(args.out)
  table = cells(runs, regimes)
  if not table:
    raise SystemExit(f"no finished runs in {args.out}/runs.csv")
  for regime in regimes:
    plot(args, runs, table, regime)
  common.write_numbers(
    args,
    "Loss spikes: AdamW, StableAdamW, Adam-atan2 and skipped steps",
    [
      f"Spike: `spikes.events(loss, {', '.join(f'{k}={v}' for k, v in LOSS_SPIKE.items())})`: "
      "above 2x the running median of the previous 20 steps plus 0.1 nats; points within "
      "10 steps are one event. Height: the largest loss in the event. First spike: its "
      "step, averaged over the seeds that spiked. Final loss: mean of the last 10% of "
      "steps. Skipped steps: spike_skips of each seed (adamw+skip).",
      "",
      *common.table(list(table[0]), table),
    ],
  )


if __name__ == "__main__":
  main()
