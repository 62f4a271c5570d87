"""Scaling rules for AdamW's learning rate, SP and muP, tested on held-out scales.

Runs `adamlab fit` on configs/rules/gpt.py for each parametrization: at every scale
(width x steps x batch), an lr grid per seed; then log2 lr* = c + a_w log2 width +
a_t log2 steps + a_b log2 batch is fitted on all scales but the widest and the longest,
and their optima are predicted, trained at, and measured on their own grids.

Reports the exponents with 90% bootstrap intervals, the same rule in Marin's
coordinates (tokens T = steps x batch x seq_len and batch B: lr ~ T^a_T B^a_B, with
a_T = a_t and a_B = a_b - a_t), the width exponent against seed 004 (-1: lr x width
constant) and muP (0), and each held-out scale's predicted against measured optimum.

    python scripts/scaling_rules.py --quick --workers 2   # widths 16-128, 2 CPU cores
    python scripts/scaling_rules.py                       # widths 128-1024: a GPU
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import common
from adamlab.analysis import rules, transfer

FIELD = "optimizer.learning_rate"
ARMS = {"sp": "SP, one global lr", "mup": "muP (table)"}
ANCHORS = {"model.width": "seed 004: -1; muP: 0; Marin: -0.345", "steps": "Marin: -0.346"}


def fit(args, param: str) -> dict:
  """`adamlab fit` for one parametrization; copies its outputs; returns rules.json."""
  spec = (
    os.path.join(common.REPO, "configs", "rules", "gpt.py")
    + ":"
    + (("quick," if args.quick else "") + param)
  )
  workdir = os.path.join(args.sweeps, f"scaling_rules-{param}-{args.mode}")
  cmd = [sys.executable, "-m", "adamlab", "fit", "--config", spec, "--workdir", workdir]
  cmd += ["--workers", str(args.workers), "--pack", str(args.pack)]
  print("$", " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  for f in ("fit.json", "rules.json", "rules.md", "optima.csv"):
    shutil.copy(os.path.join(workdir, f), os.path.join(args.out, f"{param}-{f}"))
  with open(os.path.join(workdir, "rules.json")) as f:
    return dict(json.load(f)[FIELD], workdir=workdir)


def raw_rows(param: str, workdir: str) -> list:
  """Every finished run of the fit: its values and final losses."""
  rows = []
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name, "result.json")
    if os.path.exists(path):
      with open(path) as f:
        r = json.load(f)
      rows.append(
        dict(
          parametrization=param,
          **r["values"],
          diverged=r["diverged"],
          final_eval_loss=r.get("final_eval_loss"),
          final_loss=r.get("final_loss"),
        )
      )
  return rows


def seed_spread(rows: list, fields: list, grid: list) -> str:
  """How far apart the seeds' own optima are on the lr grid (the runs at the
  predictions left out), over the scales where both are inside it."""
  rows = [dict(r, final_eval_loss=None) if r["diverged"] else r for r in rows if r[FIELD] in grid]
  found = transfer.optima(rows, FIELD, "final_eval_loss", by=(*fields, "seed"))
  by_scale: dict = {}
  for o in found:
    if o["log_x"] is not None and not o["at_edge"]:
      by_scale.setdefault(tuple(o[f] for f in fields), []).append(o["log_x"])
  gaps = sorted(max(v) - min(v) for v in by_scale.values() if len(v) > 1)
  if not gaps:
    return "Seed spread: no scale has two seeds with an interior optimum."
  return (
    f"Seed spread: the seeds' own optima differ by a median {gaps[len(gaps) // 2]:.2f} "
    f"octaves (max {gaps[-1]:.2f}) over {len(gaps)} scales."
  )


def summary(label: str, rule: dict, predictions: list) -> list:
  """numbers.md lines for one arm: the fit (rules.describe), the exponents next to
  the anchors, and the held-out error."""
  pct = f"{rule['level']:.0%}"
  ex, iv = rule["exponents"], rule["intervals"]
  per_batch = rules.combine(rule, {"batch_size": 1, "steps": -1})
  errors = [abs(p["error_octaves"]) for p in predictions if not p["at_edge"]]
  return [
    f"### {label}",
    *rules.describe(rule, FIELD, predictions)[1:],
    f"| exponent of lr* | fitted | {pct} interval | anchors |",
    "|---|---|---|---|",
    *(
      f"| {f} | {ex[f]:+.3f} | [{iv[f][0]:+.3f}, {iv[f][1]:+.3f}] | {ANCHORS.get(f, '')} |"
      for f in rule["fields"]
    ),
    f"| batch at fixed tokens (a_b - a_t) | {per_batch['value']:+.3f} | "
    f"[{per_batch['low']:+.3f}, {per_batch['high']:+.3f}] | Marin: +0.5 |",
    "",
    f"Held out: mean |error| {sum(errors) / max(1, len(errors)):.2f} octaves over "
    f"{len(errors)} scales with an interior optimum; "
    f"{sum(p['inside'] for p in predictions)}/{len(predictions)} measured optima inside "
    "their prediction interval.",
    "",
  ]


def main():
  args = common.parse("scaling_rules", __doc__, pack=8)
  lines, raw = [], []
  for param, label in ARMS.items():
    out = fit(args, param)
    mine = raw_rows(param, out["workdir"])
    raw += mine
    lines += summary(label, out["rule"], out["predictions"])
    with open(os.path.join(out["workdir"], "fit.json")) as f:
      grid = json.load(f)["rules"]["space"][FIELD]
    lines += [seed_spread(mine, out["rule"]["fields"], grid), ""]
    path = os.path.join(args.out, f"{param}.png")
    rules.plot(out["rule"], out["predictions"], FIELD, path, title=f"{label}: optimal lr")
  columns = list(dict.fromkeys(k for r in raw for k in r))
  with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=columns)
    w.writeheader()
    w.writerows(raw)
  common.write_numbers(
    args,
    "Scaling rules for AdamW's lr: GPT on GCIDE",
    [
      "Rule: log2 lr* = c + a_w log2 width + a_t log2 steps + a_b log2 batch, the optimum "
      "per scale being the vertex of a parabola through the best lr of the two seeds' "
      "mean final eval loss and its neighbours. Held out: the widest width and the "
      "longest run. Intervals: bootstrap over seeds and scales.",
      "",
      *lines,
    ],
  )


if __name__ == "__main__":
  main()
