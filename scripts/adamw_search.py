"""AdamW coordinate descent (seed 004): near-optimal settings at three small scales.

Runs `adamlab search` on configs/search/adamw.py (a GPT on GCIDE; scales: a base
width x steps, 2x the steps, 2x the width), then puts the chosen setting of each
scale next to the seed's table and copies the search's classification (which
hyperparameters' optima move with scale, and which the loss is sensitive to).

    python scripts/adamw_search.py --quick    # widths 32-64, 60-120 steps
"""

import csv
import os
import shutil
import subprocess
import sys

import common

# The seed's near-optimal AdamW setting (0.1B-0.5B parameters, 10B-50B tokens).
SEED = {
  "optimizer.learning_rate": "1.6e-2 x 512 / width",
  "optimizer.weight_decay": 0.1,
  "optimizer.final_lr_ratio": 0.0,
  "optimizer.warmup_steps": 2000,
  "optimizer.b1": 0.9,
  "optimizer.b2": 0.95,
  "optimizer.eps": 1e-15,
  "optimizer.grad_clip_norm": 1.0,
}


def main():
  args = common.parse("adamw_search", __doc__, pack=4)
  spec = os.path.join(common.REPO, "configs", "search", "adamw.py") + (
    ":quick" if args.quick else ""
  )
  workdir = os.path.join(args.sweeps, f"adamw_search-{args.mode}")
  cmd = [
    sys.executable,
    "-m",
    "adamlab",
    "search",
    "--config",
    spec,
    "--workdir",
    workdir,
    "--workers",
    str(args.workers),
    "--pack",
    str(args.pack),
  ]
  print("$", " ".join(cmd), flush=True)
  subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  for f in ("search.json", "choices.csv", "choices.md", "classification.md"):
    shutil.copy(os.path.join(workdir, f), os.path.join(args.out, f))
  shutil.copytree(
    os.path.join(workdir, "sensitivity"), os.path.join(args.out, "sensitivity"), dirs_exist_ok=True
  )
  with open(os.path.join(workdir, "choices.csv")) as f:
    choices = list(csv.DictReader(f))
  scales = list(dict.fromkeys(c["scale"] for c in choices))
  final = {(c["scale"], c["field"]): c["value"] for c in choices}  # the last pass wins
  rows = []
  for field, seed in SEED.items():
    rows.append(
      {
        "hyperparameter": field.split(".")[-1],
        "seed 004": seed,
        **{s: final.get((s, field), "") for s in scales},
      }
    )
  with open(os.path.join(workdir, "classification.md")) as f:
    classification = f.read()
  common.write_numbers(
    args,
    "AdamW coordinate descent: GPT on GCIDE",
    [
      "Chosen value per scale (the last pass of the coordinate descent) next to the "
      "seed's near-optimal table:",
      "",
      *common.table(list(rows[0]), rows),
      "",
      "Which optima shift with scale and which hyperparameters the loss is sensitive "
      "to (classification.md):",
      "",
      classification,
      "Every step of the search: choices.md; loss vs value per hyperparameter: sensitivity/.",
    ],
  )


if __name__ == "__main__":
  main()
