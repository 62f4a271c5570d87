"""Does StableAdamW's update clipping replace warmup? (seed 000: Wortsman et al. 2023)

Update clipping comes from Adafactor, where an out-of-date second moment showed up in
runs without warmup. Here a GPT on GCIDE and a ViT on Fashion-MNIST train with AdamW,
StableAdamW (update clipping at 1) and AdamW with global-norm gradient clipping at 1,
without warmup and with a linear warmup over the first 10% of the steps, over an lr
grid of 6 octaves and b2 in {0.95, 0.99, 0.999}, 3 seeds (configs/sweeps/warmup.py).

Per (model, arm, warmup, b2): the final held-out loss against lr (mean and spread over
seeds), the best lr, and the lr sensitivity (`sensitivity.lr_sensitivity`: the mean
over the grid of the loss minus the best loss, a diverged or worse-than-init run
counted at the loss of a uniform prediction). In the ViT runs: which layer's RMS_t
peaks highest in the first 50 steps, and when some layer's first goes above 1.

Writes experiments/warmup/<quick|full>/: runs.csv and series/ (every run's per-step
loss; the ViT's per-layer RMS_t over the first steps), numbers.md, warmup.png.

    python scripts/warmup.py --quick --workers 2
"""

import math
import os

import numpy as np

import common
from adamlab.analysis import sensitivity, spikes

MODELS = ("gpt", "vit")
CAP = {"gpt": math.log(256), "vit": math.log(10)}  # the loss of a uniform prediction
EARLY = 50  # steps of per-layer RMS_t kept from each ViT run
PATCH = "patch_embed.kernel"


def arm(row) -> str:
  name = {"adamw": "AdamW", "stable_adamw": "StableAdamW"}[row["optimizer.name"]]
  return name + (" + clip 1" if float(row["optimizer.grad_clip_norm"]) else "")


def run_sweeps(args) -> list:
  """Run (or find) both sweeps; save each run's series; returns runs.csv's rows."""
  table = []
  for model in MODELS:
    workdir, rows = common.sweep(args, "warmup", tag=f"{model}_", preset=model)
    for r in rows:
      logged = common.read_metrics(os.path.join(workdir, r["id"]))
      arrays = {"loss": common.series(workdir, r["id"], "loss", logged)[1].astype(np.float32)}
      if model == "vit":
        for k in logged[0]:
          if k.startswith("rms/") and (k.endswith("kernel") or spikes.depth(k[4:]) == 0):
            arrays[k] = common.series(workdir, r["id"], k, logged)[1][:EARLY].astype(np.float16)
      path = common.save_series(args.out, model, r["id"], arrays)
      table.append(
        dict(
          model=model,
          arm=arm(r),
          warmup=r["optimizer.warmup_steps"],
          b2=r["optimizer.b2"],
          lr=r["optimizer.learning_rate"],
          seed=r["seed"],
          final_eval_loss=r["final_eval_loss"],
          diverged=r["diverged"],
          run_id=r["id"],
          series=path,
        )
      )
  common.write_csv(os.path.join(args.out, "runs.csv"), table)
  return table


def read_runs(out: str) -> list:
  """runs.csv's rows, typed, each with its series."""
  runs = []
  for row in common.read_csv(os.path.join(out, "runs.csv")):
    loss = float(row["final_eval_loss"]) if row["final_eval_loss"] not in ("", "None") else None
    run = dict(row, warmup=int(row["warmup"]), b2=float(row["b2"]), lr=float(row["lr"]))
    run.update(seed=int(row["seed"]), final_eval_loss=loss)
    with np.load(os.path.join(out, row["series"])) as z:
      run["loss"] = z["loss"]
      run["rms"] = {k[4:]: z[k].astype(np.float32) for k in z.files if k.startswith("rms/")}
    runs.append(run)
  return runs


def curve(runs, key) -> tuple:
  """(lrs, losses[seed, lr]) of one (model, arm, warmup, b2) cell; None where diverged."""
  mine = [r for r in runs if (r["model"], r["arm"], r["warmup"], r["b2"]) == key]
  lrs = sorted({r["lr"] for r in mine})
  seeds = sorted({r["seed"] for r in mine})
  losses = [[None] * len(lrs) for _ in seeds]
  for r in mine:
    ok = r["final_eval_loss"] is not None and r["diverged"] != "True"
    losses[seeds.index(r["seed"])][lrs.index(r["lr"])] = r["final_eval_loss"] if ok else None
  return lrs, losses


def _capped(losses, cap) -> np.ndarray:
  """losses[seed][lr] with a diverged point (None) at cap and none above it."""
  return np.array([[cap if m is None else min(m, cap) for m in s] for s in losses])


def cells(runs) -> list:
  """One row per (model, arm, warmup, b2): best lr and loss, lr sensitivity (mean, sd)."""
  out = []
  keys = sorted({(r["model"], r["arm"], r["warmup"], r["b2"]) for r in runs})
  for key in keys:
    lrs, losses = curve(runs, key)
    cap = CAP[key[0]]
    capped = _capped(losses, cap)
    mean = capped.mean(0)
    sens = [sensitivity.lr_sensitivity(s, cap) for s in losses]
    out.append(
      dict(
        model=key[0],
        arm=key[1],
        warmup=key[2],
        b2=key[3],
        best_lr=lrs[int(np.argmin(mean))],
        best_loss=float(mean.min()),
        best_loss_sd=float(capped[:, int(np.argmin(mean))].std(ddof=1)),
        lr_sensitivity=float(np.mean(sens)),
        sensitivity_sd=float(np.std(sens, ddof=1)),
        diverged=sum(m is None for s in losses for m in s),
        runs=capped.size,
      )
    )
  return out


def rms_rows(runs) -> list:
  """Per (arm, warmup), over the ViT runs (every b2 and lr): the layers whose RMS_t peaks
  highest in the first EARLY steps and how often, the patch embedding's rank among the
  layers (median), its median peak, and the median step at which each run first has a
  layer above 1."""
  out = []
  vit = [r for r in runs if r["model"] == "vit" and r["rms"]]
  for key in sorted({(r["arm"], r["warmup"]) for r in vit}):
    mine = [r for r in vit if (r["arm"], r["warmup"]) == key]
    tops, ranks, firsts = [], [], []
    for r in mine:
      peaks = {k: float(np.max(v)) for k, v in r["rms"].items()}
      order = sorted(peaks, key=lambda k: -peaks[k])
      tops.append(order[0])
      ranks.append(order.index(PATCH) + 1)
      above = [np.flatnonzero(np.asarray(v, float) > 1.0) for v in r["rms"].values()]
      firsts.append(min(int(a[0]) + 1 for a in above if len(a)))  # logged steps start at 1
    common_tops = sorted(set(tops), key=lambda k: -tops.count(k))[:3]
    out.append(
      dict(
        arm=key[0],
        warmup=key[1],
        runs=len(mine),
        highest_peak=", ".join(f"{k} {tops.count(k)}" for k in common_tops),
        patch_embed_highest=tops.count(PATCH),
        patch_embed_rank=float(np.median(ranks)),
        layers=len(mine[0]["rms"]),
        patch_embed_peak=float(np.median([np.max(r["rms"][PATCH]) for r in mine])),
        first_above_1=float(np.median(firsts)),
      )
    )
  return out


STYLE = {"AdamW": "C0", "StableAdamW": "C3", "AdamW + clip 1": "C2"}


def plot(args, runs) -> None:
  """Final held-out loss against lr: one row per model, one column per b2; colour: arm,
  solid: warmup, dashed: none. Diverged points are drawn at the cap."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  b2s = sorted({r["b2"] for r in runs})
  fig, axes = plt.subplots(len(MODELS), len(b2s), figsize=(13, 7.5), squeeze=False)
  for i, model in enumerate(MODELS):
    for j, b2 in enumerate(b2s):
      ax = axes[i][j]
      for name, color in STYLE.items():
        for warmup in sorted({r["warmup"] for r in runs}):
          lrs, losses = curve(runs, (model, name, warmup, b2))
          if not lrs:
            continue
          capped = _capped(losses, CAP[model])
          ls = "-" if warmup else "--"
          label = f"{name}, {'warmup ' + str(warmup) if warmup else 'no warmup'}"
          ax.errorbar(
            lrs,
            capped.mean(0),
            capped.std(0, ddof=1),
            color=color,
            ls=ls,
            marker=".",
            capsize=2,
            label=label,
          )
      ax.set_xscale("log", base=2)
      ax.set(title=f"{model}, b2 {b2}", xlabel="peak lr", ylabel="final held-out loss")
  axes[0][0].legend(fontsize=7)
  fig.suptitle(
    "No warmup (dashed) against warmup (solid): mean and sd of 3 seeds; the cap is a uniform prediction"
  )
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "warmup.png"), dpi=100)
  plt.close(fig)


def main():
  args = common.parse("warmup", __doc__, pack=24)
  run_sweeps(args)
  runs = read_runs(args.out)
  plot(args, runs)
  table, rms = cells(runs), rms_rows(runs)
  common.write_numbers(
    args,
    "Warmup against update clipping: AdamW, StableAdamW, AdamW + global-norm clipping",
    [
      "Final held-out loss after the cosine decay, capped at a uniform prediction's (GPT "
      f"ln 256 = {CAP['gpt']:.3f}, ViT ln 10 = {CAP['vit']:.3f}); a diverged run counts at "
      "the cap. best_lr, best_loss (sd over seeds): the lr with the lowest mean over 3 "
      "seeds. lr_sensitivity (sd): Wortsman et al.'s mean over the grid of loss minus "
      "best loss, per seed, then mean and sd over the seeds. diverged: runs stopped by "
      "non-finite steps, of `runs`.",
      "",
      *common.table(list(table[0]), table),
      "",
      f"ViT, the first {EARLY} steps of every run (all b2 and lr): highest_peak: the "
      "weight matrices or embeddings whose RMS_t reaches the highest value, and in how "
      "many runs; patch_embed_highest: runs where it is the patch embedding's kernel; "
      "patch_embed_rank: its median rank of `layers`; patch_embed_peak: the median of its "
      "largest RMS_t; first_above_1: the median step at which some layer's RMS_t first "
      "exceeds 1 (RMS_t is exactly 1 at step 1, where v_hat = g^2).",
      "",
      *common.table(list(rms[0]), rms),
    ],
  )


if __name__ == "__main__":
  main()
