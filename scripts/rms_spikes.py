"""Do RMS spikes predict loss spikes? (Wortsman et al. 2023, seed 000)

On the AdamW runs of scripts/loss_spikes.py, read back from their committed series
(experiments/loss_spikes/<mode>/runs.csv and series/): per layer, the probability
that a loss spike follows an RMS_t spike within W steps, for W in {1, 4, 8, 16},
against the same probability for an RMS spike placed at random (the chance level);
the lags from each loss spike back to the nearest RMS spike (positive: RMS first);
early layers (the first hidden layer) against late ones (the second and the readout).

    python scripts/loss_spikes.py --quick && python scripts/rms_spikes.py --quick
    python scripts/rms_spikes.py --quick --vit     # the ViT runs (loss_spikes.py --vit)
"""

import math
import os
import sys

import numpy as np

import common
from adamlab.analysis import spikes
from loss_spikes import LOSS_SPIKE, REGIMES, read_runs

WINDOWS = (1, 4, 8, 16)
RMS_SPIKE = dict(k=2.0, window=20)  # an RMS_t spike: > 2x its running median (20 steps)
MAX_LEAD = 500  # how far back from a loss spike RMS_t going over 1 is looked for


def groups(layers) -> dict:
  """Each weight matrix and embedding alone, then early (first half by depth) and late
  (the rest: every layer, norms and biases too)."""
  layers = sorted(layers, key=lambda l: (spikes.depth(l), l))
  finite = sorted({spikes.depth(l) for l in layers if math.isfinite(spikes.depth(l))})
  half = finite[len(finite) // 2] if finite else 0
  alone = [l for l in layers if l.endswith("kernel") or spikes.depth(l) == 0]
  return {
    **{l: [l] for l in alone},
    "early": [l for l in layers if spikes.depth(l) < half],
    "late": [l for l in layers if spikes.depth(l) >= half],
  }


CAUSES = {  # what counts as an RMS event
  "spike": lambda x: spikes.detect(x, **RMS_SPIKE),
  "over 1": lambda x: spikes.crossings(x, 1.0),  # v stops covering g^2
}


def rows_for(runs, label, cause: str) -> list:
  series = [(r["rms"], r["loss"]) for r in runs]
  out = []
  for name, members in groups(runs[0]["rms"]).items():
    for w in WINDOWS:
      s = spikes.pooled(series, members, follow_window=w, loss_spike=LOSS_SPIKE, find=CAUSES[cause])
      out.append(
        {
          "runs": label,
          "RMS event": cause,
          "layer": name,
          "W": w,
          "RMS events": s["rms_spikes"],
          "loss spikes": s["loss_spikes"],
          "P(follow)": s["p_follow"],
          "P by chance": s["p_chance"],
          "ratio": s["p_follow"] / s["p_chance"] if s["p_chance"] else float("nan"),
        }
      )
  return out


def any_layer(run, cause: str) -> list:
  return sorted({t for v in run["rms"].values() for t in CAUSES[cause](v)})


def lag_counts(runs, max_lag: int):
  """Per loss spike, the lag to the nearest RMS_t spike of any layer within max_lag:
  ({lag: count}, lags)."""
  lags = []
  for r in runs:
    lags += spikes.lag(any_layer(r, "spike"), spikes.detect(r["loss"], **LOSS_SPIKE), max_lag)
  return {d: lags.count(d) for d in range(-max_lag, max_lag + 1)}, lags


def leads(runs, max_lead: int) -> list:
  """Per loss spike, the steps since RMS_t of any layer last went over 1 (None: not
  within max_lead)."""
  out = []
  for r in runs:
    out += spikes.lead(any_layer(r, "over 1"), spikes.detect(r["loss"], **LOSS_SPIKE), max_lead)
  return out


def main():
  args = common.parse(
    "rms_spikes",
    __doc__,
    pack=3,
    switches={"--vit": "the ViT runs of loss_spikes.py --vit, into <mode>/vit/"},
  )
  source = os.path.join(
    common.REPO, "experiments", "loss_spikes", args.mode, *(["vit"] if args.vit else [])
  )
  if args.vit:
    args.out = os.path.join(args.out, "vit")
    os.makedirs(args.out, exist_ok=True)
  if not os.path.exists(os.path.join(source, "runs.csv")):
    sys.exit(f"no {source}/runs.csv: run scripts/loss_spikes.py first")
  runs = [r for r in read_runs(source) if r["optimizer"] == "adamw"]
  regimes = [g for g in REGIMES + ("vit",) if any(r["regime"] == g for r in runs)]
  if not regimes:
    sys.exit(f"no AdamW runs in {source}/runs.csv")
  table, lines = [], []
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 3.5), squeeze=False)
  for ax, regime in zip(axes[0], regimes):
    mine = [r for r in runs if r["regime"] == regime]
    for cause in CAUSES:
      table += rows_for(mine, f"{regime} ({len(mine)})", cause)
    found = leads(mine, MAX_LEAD)
    ahead = [d for d in found if d is not None]
    counts, lags = lag_counts(mine, max(WINDOWS))
    ax.bar(list(counts), list(counts.values()))
    ax.set_title(f"{regime}: loss spike step - nearest RMS_t spike (any layer)", fontsize=9)
    ax.set_xlabel("lag (positive: the RMS spike came first)")
    within = [d for d in lags if 1 <= d <= 8]
    lines.append(
      f"- {regime}: {len(lags)} loss spikes with an RMS spike within "
      f"{max(WINDOWS)} steps (any layer); median lag "
      f"{np.median(lags) if lags else float('nan'):.1f}; lag in [1, 8]: "
      f"{len(within)}; lag <= 0: {sum(d <= 0 for d in lags)}. RMS_t of some layer "
      f"went over 1 within {MAX_LEAD} steps before {len(ahead)} of {len(found)} loss "
      f"spikes, a median {np.median(ahead) if ahead else float('nan'):.0f} steps "
      f"before (range {min(ahead, default='-')}-{max(ahead, default='-')})."
    )
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "lags.png"), dpi=100)
  common.write_numbers(
    args,
    "Do RMS spikes predict loss spikes? AdamW runs of loss_spikes",
    [
      f"AdamW runs of every b2 and seed ({os.path.relpath(source, common.REPO)}/runs.csv). Loss "
      f"spike: `spikes.events(loss, {LOSS_SPIKE})`; RMS_t spike: > 2x its running median "
      "of 20 steps, consecutive steps one event; RMS_t over 1: a step where it rises above "
      "1 (`spikes.crossings`). P(follow): the fraction of RMS events with a loss spike "
      "within W steps after (the same step included). Chance: the same probability for an "
      "RMS event placed uniformly at random in its run. ratio: P(follow) / chance.",
      "",
      *lines,
      "",
      *common.table(list(table[0]), table),
    ],
  )


if __name__ == "__main__":
  main()
