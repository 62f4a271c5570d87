"""Do RMS spikes predict loss spikes? (Wortsman et al. 2023, seed 000)

On the AdamW runs of the beta2 sweep (scripts/beta2_spikes.py, reused if done): per
layer, the probability that a loss spike follows an RMS_t spike within W steps,
against the same probability for RMS spikes placed at random (the chance level), and
the lag from each loss spike back to the nearest RMS spike (positive: RMS first).
Layers are pooled into early (embeddings and the first half of the blocks) and late
(the rest, the head included).

    python scripts/rms_spikes.py --quick
"""

import math

import common
from adamlab.analysis import spikes
from beta2_spikes import runs_by_setting

WINDOW = 10  # a loss spike within this many steps after an RMS spike counts as following it


def main():
  args = common.parse("rms_spikes", __doc__, pack=3)
  runs = [r for (name, _), r in sorted(runs_by_setting(args).items()) if name == "adamw"]
  series = [(r["rms"], r["loss"]) for r in runs]
  layers = sorted(runs[0]["rms"], key=lambda l: (spikes.depth(l), l))
  finite = sorted({spikes.depth(l) for l in layers if math.isfinite(spikes.depth(l))})
  half = finite[len(finite) // 2] if finite else 0
  groups = {"early": [l for l in layers if spikes.depth(l) < half],
            "late": [l for l in layers if spikes.depth(l) >= half]}
  rows = []
  for name, members in [*[(l, [l]) for l in layers], *groups.items()]:
    s = spikes.pooled(series, members, follow_window=WINDOW)
    rows.append({"layer": name, "RMS spikes": s["rms_spikes"], "loss spikes": s["loss_spikes"],
                 "P(loss spike within W after an RMS spike)": s["p_follow"],
                 "P by chance": s["p_chance"], "median lag": s["median_lag"],
                 "lags": " ".join(map(str, s["lags"]))})
  common.write_numbers(args, "Do RMS spikes predict loss spikes? AdamW ViT runs, b2 sweep", [
      f"W = {WINDOW} steps; {len(runs)} AdamW runs (b2 {[r['row']['optimizer.b2'] for r in runs]}); "
      "loss spikes are counted once per run (the 'loss spikes' column counts them per run "
      "pooled). Spike: > 2x the running median of the previous 20 steps. Chance: the "
      "probability for an RMS spike placed uniformly at random in its run. Lag: loss "
      "spike minus the nearest RMS spike within W (positive: RMS first). "
      f"early = {groups['early']}; late = the rest.", "",
      *common.table(list(rows[0]), rows)])


if __name__ == "__main__":
  main()
