"""Weight decay across width and training length: which weight_decay_mode keeps the
optimal decay in place (seed 004's "0.1 is stable across scales"; Wang and Aitchison 2024).

muP AdamW on the TP5 MLP and a 1024-image Fashion-MNIST subset, so the model overfits
and the held-out loss has an optimal decay. For each `optimizer.weight_decay_mode`
(coupled, independent, width_scaled, timescale): held-out loss at the end vs log2
lambda (log2 tau in timescale mode), at three widths (T steps) and at the base width
for T and 4T steps; the optimum per cell (a parabola's vertex on the log2 grid), its
spread over seeds, and its drift. The base-width runs are shared by the four modes:
there every lr multiplier is 1 and the modes differ only by a rescaling of lambda.

    python scripts/weight_decay.py --quick     # widths 32-512, 2 CPU cores
    python scripts/weight_decay.py             # widths 256-4096
"""

import importlib.util
import math
import os

import numpy as np

import common
from adamlab.analysis import transfer
from adamlab.optim.theory import exponents

MODES = ("coupled", "independent", "width_scaled", "timescale")
SEED_004 = 0.1  # its near-optimal AdamW weight decay at every scale it tried
C = {role: e.c for role, e in exponents("mup", "adam", "full").items()}


def sweep_config():
  """configs/sweeps/weight_decay.py as a module: its lr and the shape of the grid."""
  path = os.path.join(common.REPO, "configs", "sweeps", "weight_decay.py")
  spec = importlib.util.spec_from_file_location("weight_decay_sweep", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


WD = sweep_config()


def decay(mode: str, x: float, role: str, width: int, base: int, steps: int) -> float:
  """Peak per-step decay of a `role` weight for a mode's lambda (tau in timescale)."""
  k = (width / base) ** -C[role]  # the leaf's muP lr multiplier
  if mode == "coupled":
    return WD.LR * k * x
  if mode == "width_scaled":
    return WD.LR * x  # lambda * m^c cancels the width part of k
  if mode == "independent":
    return x
  return 1.0 / (x * steps)  # k and lr cancel in lambda = 1 / (tau lr k T)


def at_base(mode: str, d: float, steps: int) -> float:
  """The mode's lambda (tau) of per-step decay d at the base width (every k is 1)."""
  if mode in ("coupled", "width_scaled"):
    return d / WD.LR
  return d if mode == "independent" else 1.0 / (d * steps)


def swept(mode: str) -> str:
  return "optimizer.weight_decay" + ("_timescale" if mode == "timescale" else "")


def point(mode, r, x) -> dict:
  loss = r["final_eval_loss"]
  ok = loss is not None and math.isfinite(loss) and not r["diverged"]
  return dict(
    mode=mode,
    width=r["model.width"],
    steps=r["steps"],
    seed=r["seed"],
    x=x,
    eval_loss=loss if ok else math.inf,
  )


def mode_points(mode, base_rows, own_rows) -> list:
  """A mode's decayed runs: its own sweep's, and the base sweep's (coupled) converted."""
  pts = [
    point(mode, r, at_base(mode, WD.LR * r["optimizer.weight_decay"], r["steps"]))
    for r in base_rows
    if r["optimizer.weight_decay"] > 0
  ]
  return pts + [point(mode, r, r[swept(mode)]) for r in own_rows if r[swept(mode)] > 0]


def seed_mean(pts) -> list:
  """One point per (mode, width, steps, x): the mean over seeds (inf if any seed is)."""
  groups = {}
  for p in pts:
    groups.setdefault((p["mode"], p["width"], p["steps"], p["x"]), []).append(p["eval_loss"])
  return [
    dict(mode=m, width=w, steps=s, x=x, eval_loss=float(np.mean(v)), seeds=len(v))
    for (m, w, s, x), v in sorted(groups.items())
  ]


def optima(pts, means) -> dict:
  """{(mode, width, steps): optimum of the seed mean, with per-seed optima added}."""
  by = ("mode", "width", "steps")
  out = {tuple(o[k] for k in by): o for o in transfer.optima(means, "x", "eval_loss", by)}
  for o in transfer.optima(pts, "x", "eval_loss", by + ("seed",)):
    out[tuple(o[k] for k in by)].setdefault("seeds", {})[o["seed"]] = o
  return out


def no_decay(rows) -> dict:
  """{(width, steps): mean held-out loss over seeds without decay} (coupled lambda = 0)."""
  out = {}
  for r in rows:
    if r["optimizer.weight_decay"] == 0:
      out.setdefault((r["model.width"], r["steps"]), []).append(r["final_eval_loss"])
  return {k: float(np.mean(v)) for k, v in out.items()}


def curves(means, mode, cells) -> dict:
  """{label: (log2 x, loss)} of a mode's seed-mean curves at cells [(label, width, steps)]."""
  out = {}
  for label, w, s in cells:
    mine = [p for p in means if (p["mode"], p["width"], p["steps"]) == (mode, w, s)]
    out[label] = ([math.log2(p["x"]) for p in mine], [p["eval_loss"] for p in mine])
  return out


def title(mode: str) -> str:
  return f"{mode} (x = log2 tau)" if mode == "timescale" else f"{mode} (x = log2 lambda)"


def figure(args, means, found, cells, ref, name, top) -> None:
  """One panel per mode, one curve per cell, each optimum dotted, no decay dashed;
  the y axis ends at `top` times the lowest loss."""
  panels = []
  refs = {label: ref[(w, s)] for label, w, s in cells}
  for mode in MODES:
    cs = curves(means, mode, cells)
    best = {label: found[(mode, w, s)]["log_x"] for label, w, s in cells}
    panels.append((title(mode), cs, best, refs))
  finite = [p["eval_loss"] for p in means if math.isfinite(p["eval_loss"])]
  transfer.plot_curves(
    panels,
    os.path.join(args.out, name),
    "log2 lambda (timescale: log2 tau)",
    "held-out loss at the end (mean of seeds)",
    ylim=(0.95 * min(finite), min(max(finite), top * min(finite))),
  )


def spread(o) -> float:
  xs = [s["log_x"] for s in o["seeds"].values() if s["log_x"] is not None]
  return max(xs) - min(xs) if xs else math.nan


def optimum_table(found, cells, base, ref) -> list:
  """Rows of numbers.md's main table: one per (mode, cell)."""
  rows = []
  for mode in MODES:
    for _, w, s in cells:
      o = found[(mode, w, s)]
      seeds = [o["seeds"][k]["log_x"] for k in sorted(o["seeds"])]
      hidden = decay(mode, o["x"], "hidden", w, base, s)
      rows.append(
        {
          "mode": mode,
          "width": w,
          "steps": s,
          "log2 x*": o["log_x"],
          "per seed": " / ".join(f"{v:.2f}" for v in seeds),
          "spread": spread(o),
          "edge": o["at_edge"] or any(v["at_edge"] for v in o["seeds"].values()),
          "best loss": o["eval_loss"],
          "no decay": ref[(w, s)],
          "hidden decay/step": hidden,
          "hidden tau/T": 1.0 / (hidden * s),
          "in/out decay/step": decay(mode, o["x"], "input", w, base, s),
        }
      )
  return rows


def shifts(found, mode, cells) -> dict:
  """Signed shift of a mode's optimum from the first cell to each other one, for the
  seed mean and per seed, and the drift (max - min) of the seed mean."""
  first = found[(mode, *cells[0][1:])]
  out = {"drift": transfer.drift(found[(mode, w, s)]["log_x"] for _, w, s in cells)}
  for label, w, s in cells[1:]:
    o = found[(mode, w, s)]
    per_seed = [o["seeds"][k]["log_x"] - first["seeds"][k]["log_x"] for k in sorted(o["seeds"])]
    out[label] = (o["log_x"] - first["log_x"], per_seed)
  return out


def slope(found, mode, cells) -> dict:
  """Fit of the optimal log2 x against log2 width (per-seed optima as the points)."""
  ws, ys = [], []
  for _, w, s in cells:
    for o in found[(mode, w, s)]["seeds"].values():
      if o["log_x"] is not None and not o["at_edge"]:
        ws.append(w)
        ys.append(o["log_x"])
  return transfer.fit_exponent(ws, ys)


def drift_lines(found, width_cells, step_cells) -> list:
  lines = []
  for mode in MODES:
    w, t = shifts(found, mode, width_cells), shifts(found, mode, step_cells)
    f = slope(found, mode, width_cells)
    fmt = lambda v: f"{v[0]:+.2f} (seeds {', '.join(f'{x:+.2f}' for x in v[1])})"
    parts = [f"{label} {fmt(v)}" for label, v in w.items() if label != "drift"]
    lines.append(
      f"- **{mode}**: across width, drift **{w['drift']:.2f}**; shift from the "
      f"base width: {'; '.join(parts)}; slope vs log2 width "
      f"{f['slope']:+.2f} ± {f['stderr']:.2f}. Across steps: "
      f"{'; '.join(f'{label} {fmt(v)}' for label, v in t.items() if label != 'drift')}."
    )
  return lines


def equivalence(means, widths) -> list:
  """At fixed lr, width_scaled, independent and timescale decay every leaf alike, so
  their curves must coincide at equal per-step decay; the largest gap says they do.
  (At the base width they share runs, so only the wider models are checked.)"""
  lines = []
  for w in widths[1:]:
    by_decay = {}
    for p in means:
      if p["width"] == w and p["mode"] != "coupled" and math.isfinite(p["eval_loss"]):
        d = decay(p["mode"], p["x"], "hidden", w, widths[0], p["steps"])
        by_decay.setdefault(round(math.log2(d), 6), []).append(p["eval_loss"])
    gaps = [max(v) - min(v) for v in by_decay.values() if len(v) == 3]
    lines.append(
      f"- width {w}: {len(gaps)} decays run in all three; largest gap in "
      f"seed-mean loss {max(gaps, default=math.nan):.2g}"
    )
  return lines


def seed_004(means, found, cells) -> list:
  """Where lambda = 0.1 lies in each mode: its distance from the optimum in log2 and
  the seed-mean loss there (interpolated on the grid), against the best."""
  rows = []
  for mode in MODES:
    for label, w, s in cells:
      xs, ys = curves(means, mode, [(label, w, s)])[label]
      o = found[(mode, w, s)]
      x = math.log2(SEED_004 if mode != "timescale" else 1.0 / (SEED_004 * WD.LR * s))
      inside = min(xs) <= x <= max(xs)
      rows.append(
        {
          "mode": mode,
          "width": w,
          "steps": s,
          "log2 x at 0.1": x,
          "log2 x* - that": o["log_x"] - x,
          "loss at 0.1": float(np.interp(x, xs, ys)) if inside else math.nan,
          "best loss": o["eval_loss"],
        }
      )
  return rows


def write(args, table, drifts, equal, s004, shape) -> None:
  T, base = shape["steps"], shape["widths"][0]
  common.write_numbers(
    args,
    "Weight decay modes across width and steps: MLP, muP AdamW",
    [
      f"Held-out loss at the end (2048 test images), muP AdamW at lr {WD.LR:g}, "
      f"{len(shape['seeds'])} seeds. x: lambda, or tau in timescale mode. log2 x*: the "
      "optimum of the seed-mean curve (vertex of a parabola through the best grid point and "
      "its neighbours); per seed: each seed's own optimum; spread: max - min of those; "
      "edge: an optimum on the grid's edge (only a bound). hidden decay/step: the hidden "
      "weight's decay per step at the peak lr that x* implies; hidden tau/T: its EMA "
      "timescale 1/(decay * T) as a fraction of training; in/out decay/step: the same for "
      "the input and output weights (muP lr exponent 1/2, against the hidden's 1); no "
      "decay: the held-out loss at lambda = 0 (coupled runs). "
      f"The width-{base} runs at {T} and "
      f"{4 * T} steps are shared by all modes (coupled runs, lambda converted).",
      "",
      *common.table(list(table[0]), table),
      "",
      "Shift of the optimal log2 x (seed mean, then per seed in the same order):",
      "",
      *drifts,
      "",
      "Check: width_scaled, independent and timescale at equal per-step decay (the same "
      "optimizer at a fixed lr):",
      "",
      *equal,
      "",
      f"Seed 004's lambda = {SEED_004} in each mode (timescale: the tau whose hidden decay "
      f"equals coupled 0.1 at the base width, 1 / (0.1 lr T)); loss at 0.1 interpolated "
      "between grid points, nan outside the grid:",
      "",
      *common.table(list(s004[0]), s004),
    ],
  )


def main():
  args = common.parse("weight_decay", __doc__, pack=12)
  _, base_rows = common.sweep(args, "weight_decay", tag="base_", preset="base")
  own = {m: common.sweep(args, "weight_decay", tag=m + "_", preset=m)[1] for m in MODES}
  pts = [p for m in MODES for p in mode_points(m, base_rows, own[m])]
  shape = WD.shape(args.quick)
  base, T = shape["widths"][0], shape["steps"]
  width_cells = [(f"width {w}", w, T) for w in shape["widths"]]
  step_cells = [(f"{T} steps", base, T), (f"{4 * T} steps", base, 4 * T)]
  means = seed_mean(pts)
  found = optima(pts, means)
  ref = no_decay(base_rows + own["coupled"])
  figure(args, means, found, width_cells, ref, "width.png", top=1.6)
  figure(args, means, found, step_cells, ref, "steps.png", top=2.5)
  cells = width_cells + step_cells[1:]
  write(
    args,
    optimum_table(found, cells, base, ref),
    drift_lines(found, width_cells, step_cells),
    equivalence(means, shape["widths"]),
    seed_004(means, found, cells),
    shape,
  )


if __name__ == "__main__":
  main()
