"""What every figure script shares: its flags, running a sweep, reading runs, writing outputs.

A figure script runs `adamlab sweep` on a sweep config (resumable: its sweep directory
is fixed, so a second call finds the finished runs), analyses the runs with
`adamlab.analysis`, and writes into experiments/<figure>/<quick|full>/: sweep.json
(the grid that ran), results.csv, the PNG and numbers.md (the measured numbers).
"""

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

from adamlab.analysis import transfer
from adamlab.train.plots import read_metrics
from adamlab.sweep import results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(name: str, doc: str, pack: int = 4, switches=None):
  """Flags of a figure script; returns args with .mode ('quick' or 'full') and .out.

  switches: {"--flag": help} of extra on/off flags the script reads as args.flag."""
  p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
  for flag, text in (switches or {}).items():
    p.add_argument(flag, action="store_true", help=text)
  p.add_argument("--quick", action="store_true", help="the small version (2 CPU cores, minutes)")
  p.add_argument("--sweeps", default="sweeps", help="where the sweep directories go")
  p.add_argument("--workers", type=int, default=1, help="jobs at a time")
  p.add_argument("--pack", type=int, default=pack, help="runs per job (vmapped)")
  args = p.parse_args()
  args.mode = "quick" if args.quick else "full"
  args.name = name
  args.out = os.path.join(REPO, "experiments", name, args.mode)
  os.makedirs(args.out, exist_ok=True)
  return args


def sweep(args, config: str, tag: str = "", preset: str = "") -> tuple:
  """Run `adamlab sweep` on configs/sweeps/<config>.py:[quick,]<preset>.

  Returns (sweep directory, rows of finished runs) and copies sweep.json and
  results.csv into the output folder (suffixed with tag when a figure runs several).
  """
  presets = ",".join((["quick"] if args.quick else []) + ([preset] if preset else []))
  spec = os.path.join(REPO, "configs", "sweeps", config + ".py") + (
    ":" + presets if presets else ""
  )
  workdir = os.path.join(args.sweeps, "-".join(filter(None, (config, preset, args.mode))))
  cmd = [
    sys.executable,
    "-m",
    "adamlab",
    "sweep",
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
  for f in ("sweep.json", "results.csv"):
    shutil.copy(os.path.join(workdir, f), os.path.join(args.out, tag + f))
  _, _, rows = results.collect(workdir)
  return workdir, [r for r in rows if r["status"] == "done"]


def tail_loss(workdir: str, run_id: str, key: str = "loss", frac: float = 0.2) -> float:
  """Mean of a run's logged `key` over its last `frac` of logged steps (inf if any is
  not finite): a less noisy final training loss than one batch's."""
  values = series(workdir, run_id, key)[1]
  tail = values[-max(1, int(round(len(values) * frac))) :]
  return float(np.mean(tail)) if len(tail) and np.all(np.isfinite(tail)) else float("inf")


def series(workdir: str, run_id: str, key: str, logged=None):
  """(steps, values) of a logged metric of one run of a sweep; `logged`: the run's
  metrics rows when the caller has already read them (several keys, one read)."""
  logged = read_metrics(os.path.join(workdir, run_id)) if logged is None else logged
  rows = [r for r in logged if key in r]
  return (
    np.array([r["step"] for r in rows]),
    np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float),
  )


def write_numbers(args, title: str, lines) -> None:
  """numbers.md: what the script measured, also printed."""
  text = f"# {title} ({args.mode})\n\n" + "\n".join(lines) + "\n"
  with open(os.path.join(args.out, "numbers.md"), "w") as f:
    f.write(text)
  print(text)


def save_series(out: str, group: str, run_id: str, arrays: dict) -> str:
  """A run's series as out/series/<group>/<run_id>.npz; returns that path, relative to out."""
  path = os.path.join("series", group, run_id + ".npz")
  os.makedirs(os.path.dirname(os.path.join(out, path)), exist_ok=True)
  np.savez_compressed(os.path.join(out, path), **arrays)
  return path


def write_csv(path: str, rows: list) -> None:
  """rows (dicts with the same keys) as a CSV file with a header."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def read_csv(path: str) -> list:
  """A CSV file's rows as dicts of strings."""
  with open(path) as f:
    return list(csv.DictReader(f))


def table(columns, rows) -> list:
  """Markdown table lines; floats to 4 significant digits (the sweep results' format)."""
  return results.table(columns, rows).split("\n")


def dump(args, name: str, obj) -> None:
  with open(os.path.join(args.out, name), "w") as f:
    json.dump(obj, f, indent=1, default=float)


def lr_transfer(args, config: str, labels: dict, title: str, tag: str = "") -> tuple:
  """The learning-rate transfer figure of a sweep over parametrization x width x lr.

  Training loss (mean of the last 20% of logged steps) vs log2 lr, one panel per
  parametrization in `labels` ({value: panel title}), one curve per width. Writes
  <tag>transfer.png and returns (workdir, rows, optima, lines for numbers.md).
  """
  workdir, rows = sweep(args, config, tag)
  for r in rows:
    r["train_loss"] = tail_loss(workdir, r["id"])
  found = transfer.optima(
    rows, "optimizer.learning_rate", "train_loss", by=("parametrization", "model.width")
  )
  panels, lines = [], []
  for p, label in labels.items():
    curves = width_curves(
      [r for r in rows if r["parametrization"] == p], "optimizer.learning_rate", math.log2
    )
    widths = sorted(curves)
    best = {o["model.width"]: o["log_x"] for o in found if o["parametrization"] == p}
    panels.append((label, curves, best))
    lines.append(
      f"- {label}: drift of the optimal log2 lr across widths {widths}: "
      f"**{transfer.drift(best.values()):.2f}**"
    )
  plot_losses(
    os.path.join(args.out, tag + "transfer.png"),
    panels,
    "log2 learning rate",
    [r["train_loss"] for r in rows],
    top=2,
  )
  cols = ["parametrization", "model.width", "log_x", "train_loss", "at_edge", "points"]
  lines = [
    f"Optimal log2 lr per width ({title}). log_x: the vertex of a parabola through the "
    "best grid point and its neighbours; at_edge: the best point is the grid's first "
    "or last finite one; points: runs that did not diverge.",
    "",
    *table(cols, found),
    "",
    *lines,
  ]
  return workdir, rows, found, lines


def plot_losses(path: str, panels, xlabel: str, losses, top: float) -> None:
  """transfer.plot_curves of training-loss panels, the y axis from 0.95 of the lowest
  finite loss to `top` times it (or the highest, if lower)."""
  finite = [v for v in losses if math.isfinite(v)]
  transfer.plot_curves(
    panels,
    path,
    xlabel,
    "training loss (last 20% of steps)",
    ylim=(0.95 * min(finite), min(max(finite), top * min(finite))) if finite else None,
  )


def width_curves(rows, x: str, log) -> dict:
  """{width: ([log(x)], [train_loss])}: one curve per width of rows that carry train_loss."""
  widths = sorted({r["model.width"] for r in rows})
  return {
    w: (
      [log(r[x]) for r in rows if r["model.width"] == w],
      [r["train_loss"] for r in rows if r["model.width"] == w],
    )
    for w in widths
  }


def sp_vs_mup(name: str, doc: str, pack: int, title: str, heading: str) -> None:
  """main() of a script that is one lr-transfer figure of SP against muP.

  name: the script's experiments/ folder and its configs/sweeps/ config; title: the
  model and optimizer in the table's caption; heading: numbers.md's title.
  """
  args = parse(name, doc, pack=pack)
  *_, lines = lr_transfer(args, name, {"sp": "SP, one global lr", "mup": "muP"}, title)
  write_numbers(args, heading, lines)


LR = "optimizer.learning_rate"


def mean_curves(rows, scale: str) -> dict:
  """{scale value: ([log2 lr], [train loss, mean over seeds])} of one arm's rows."""
  out = {}
  for v in sorted({r[scale] for r in rows}):
    lrs = sorted({r[LR] for r in rows if r[scale] == v})
    losses = [
      np.mean([r["train_loss"] for r in rows if r[scale] == v and r[LR] == lr]) for lr in lrs
    ]
    out[v] = ([math.log2(lr) for lr in lrs], losses)
  return out


def arm_summary(rows, found, label: str, scale: str, seeds) -> tuple:
  """(table rows, per-seed drifts) of one arm: per scale value the optimal log2 lr (mean
  and spread over seeds), the best loss, and the loss at the smallest scale's optimum.

  rows and found (`transfer.optima` grouped by scale and seed): this arm's only."""
  values = sorted({r[scale] for r in rows})
  best = {(o[scale], o["seed"]): o for o in found}
  drifts = [transfer.drift([best[v, s]["log_x"] for v in values if (v, s) in best]) for s in seeds]
  base_lr = nearest(rows, np.mean([best[values[0], s][LR] for s in seeds]))
  table = []
  for v in values:
    xs = [best[v, s]["log_x"] for s in seeds if best.get((v, s), {}).get("log_x") is not None]
    at_base = [r["train_loss"] for r in rows if r[scale] == v and math.isclose(r[LR], base_lr)]
    table.append(
      {
        "arm": label,
        scale.split(".")[-1]: v,
        "best log2 lr (mean)": np.mean(xs) if xs else math.nan,
        "spread (max - min over seeds)": np.ptp(xs) if xs else math.nan,
        "at edge": any(best[v, s]["at_edge"] for s in seeds if (v, s) in best),
        "best loss (mean)": np.mean([best[v, s]["train_loss"] for s in seeds if (v, s) in best]),
        f"loss at the smallest {scale.split('.')[-1]}'s best lr": (
          np.mean(at_base) if at_base else math.nan
        ),
      }
    )
  return table, drifts


def nearest(rows, lr: float) -> float:
  """The grid's learning rate nearest to lr in log2."""
  grid = sorted({r[LR] for r in rows})
  return min(grid, key=lambda g: abs(math.log2(g) - math.log2(lr)))


def write_arm_figure(args, name: str, heading: str, panels, rows, table, lines, more=()) -> None:
  """<name>.png (training loss vs log2 lr, a panel per arm) and numbers.md of a figure
  whose arms each have a table of `arm_summary` rows and a line per arm."""
  plot_losses(
    f"{args.out}/{name}.png",
    panels,
    "log2 learning rate",
    [r["train_loss"] for r in rows],
    top=1.6,
  )
  write_numbers(
    args,
    heading,
    [
      "Optimal log2 lr per arm: the vertex of a parabola through the best grid point "
      "and its neighbours, per seed, then the mean over seeds and its spread. "
      "Training loss: mean of the last 20% of logged steps.",
      "",
      *table_lines(table),
      "",
      *lines,
      *more,
    ],
  )


def table_lines(rows) -> list:
  """`table` of dict rows, their keys as the columns."""
  return table(list(rows[0]), rows)
