"""Coordinate-descent hyperparameter search (the AdamW tuning method's coordinate descent): 1-D grids, passes until stable.

    adamlab search --config configs/search/adamw.py --workdir searches/x

A search file is Python with `get_search(arg)` returning a plain dict:

    dict(base="configs/gpt.py:adamw",                    # the experiment config
         fixed={"eval_batches": 4},                       # overrides every run shares
         scales=[{"model.width": 64, "steps": 300},       # model x data scales, each
                 {"model.width": 128, "steps": 300}],     # searched on its own
         space={"optimizer.learning_rate": [1e-3, 2e-3, 4e-3],  # 1-D grids, in the
                "optimizer.b2": [0.9, 0.95, 0.99]},               # order of descent
         baseline={"optimizer.learning_rate": 2e-3},     # start (default: the config's)
         seeds=[0, 1],            # each point trained per seed, their mean compared
         metric="eval_loss", max_passes=3, sensitivity=0.01)   # ([]: the config's seed)

From the baseline, each hyperparameter in turn is swept over its grid with the others
fixed, and the best value kept; passes repeat until a pass changes nothing. Every
point is a run whose id comes from its scale and hyperparameters, so it is trained
once and reused by later passes and re-runs. Writes choices.csv/md (the value chosen
per hyperparameter per pass), sensitivity/<field>.png (loss vs value per scale) and
classification.md/json (does the optimum shift with scale, is the loss sensitive to
it). `adamlab fit` takes it from there: scaling rules for the sensitive ones.
"""

import csv
import json
import math
import os

from adamlab.analysis import rules, sensitivity
from adamlab.errors import ConfigError
from adamlab.files import write_json, write_text
from adamlab.sweep import grid, jobs, local, results
from adamlab.train.checks import check_config, check_dir, open_data

DEFAULTS = dict(
  fixed={},
  scales=[{}],
  space={},
  baseline={},
  seeds=[],
  metric="eval_loss",
  max_passes=3,
  sensitivity=0.01,
)


def prepare(path_arg: str, workdir: str):
  """Load and check the search (every grid value at every scale) before anything runs."""
  spec = grid.load_spec(path_arg, "get_search", DEFAULTS)
  sweep, baselines = check(spec)
  check_dir(workdir, "search.json", dict(search=spec), "search", added={"search": {"seeds": []}})
  return spec, sweep, baselines


def check_shape(spec: dict, kind: str = "search") -> None:
  """The types of a search-like spec's space, scales, seeds, baseline and max_passes."""
  space, scales, seeds = spec["space"], spec["scales"], spec["seeds"]
  if (
    not isinstance(space, dict)
    or not space
    or not all(isinstance(v, (list, tuple)) and v for v in space.values())
  ):
    raise ConfigError(f"{kind}.space", space, "a non-empty dict of field -> non-empty list")
  if not isinstance(scales, list) or not scales or not all(isinstance(s, dict) for s in scales):
    raise ConfigError(f"{kind}.scales", scales, "a non-empty list of dicts of overrides")
  if (
    not isinstance(seeds, list)
    or not all(isinstance(s, int) and s >= 0 for s in seeds)
    or len(set(seeds)) != len(seeds)
  ):
    raise ConfigError(f"{kind}.seeds", seeds, "distinct integers >= 0 ([]: the config's seed)")
  if not isinstance(spec["baseline"], dict):
    raise ConfigError(f"{kind}.baseline", spec["baseline"], "a dict of field -> value")
  for key in spec["baseline"]:
    if key not in space:
      raise ConfigError(f"{kind}.baseline.{key}", spec["baseline"][key], f"a field of {kind}.space")
  if not isinstance(spec["max_passes"], int) or spec["max_passes"] < 1:
    raise ConfigError(f"{kind}.max_passes", spec["max_passes"], "an integer >= 1")


def check(spec: dict, kind: str = "search"):
  """(sweep, baselines per scale) of a search-like spec, every run's config checked."""
  check_shape(spec, kind)
  space, scales, seeds = spec["space"], spec["scales"], spec["seeds"]
  sweep = dict(base=spec["base"], fixed=spec["fixed"])
  baselines = []
  for scale in scales:
    config = grid.run_config(sweep, scale)
    baseline = {f: spec["baseline"].get(f, _get(config, f)) for f in space}
    for field, values in space.items():
      for v in values:
        for seed in seeds or [None]:
          check_config(grid.run_config(sweep, seeded({**scale, **baseline, field: v}, seed)))
    baselines.append(baseline)
  open_data(grid.run_config(sweep, {**scales[0], **baselines[0]}))
  return sweep, baselines


def seeded(values: dict, seed) -> dict:
  """A run's values with its seed (None: the config's seed, no field)."""
  return values if seed is None else {**values, "seed": seed}


def _get(config, field):
  for part in field.split("."):
    config = config[part]
  return config


def run(
  path_arg: str,
  workdir: str,
  workers: int = 1,
  backend: str = "local",
  pack: int = 1,
  address: str = "",
  log=print,
) -> dict:
  """Run the search; returns {"choices": rows, "classification": rows, "failed": n}."""
  local.check_executor(workers, pack)
  spec, sweep, baselines = prepare(path_arg, workdir)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "search.json"), dict(search=spec))
  execute = lambda planned: local.execute(
    sweep, workdir, planned, workers, backend, pack, address, log
  )
  with jobs.forwarding_signals():  # (between rounds too: a signal then ends the next)
    current, curves, _, choices, failed = descend(spec, baselines, workdir, execute, log)
  rows = sensitivity.classify(spec["scales"], current, curves, spec["sensitivity"])
  _write(workdir, spec, choices, rows, curves)
  return dict(choices=choices, classification=rows, failed=len(failed), current=current)


def descend(spec, baselines, workdir, execute, log):
  """Coordinate descent from the baselines, one hyperparameter at a time, every scale
  at once. Returns (current values, curves {field: [(value, mean metric)]}, seed curves
  {field: [(value, [metric per seed])]}, choices, failed run ids) per scale."""
  key = results.metric_key(spec["metric"])
  current = [dict(b) for b in baselines]
  curves = [{} for _ in spec["scales"]]
  seed_curves = [{} for _ in spec["scales"]]
  choices, failed = [], set()
  active = list(range(len(spec["scales"])))
  for pass_ in range(1, spec["max_passes"] + 1):
    changed = set()
    for field, grid_values in spec["space"].items():
      candidates = {i: _with(grid_values, current[i][field]) for i in active}
      points = {}  # (scale, value) -> [(run id, values) per seed]
      for i in active:
        for v in candidates[i]:
          points[i, v] = [
            (grid.run_id(values), values)
            for values in (
              seeded({**spec["scales"][i], **current[i], field: v}, seed)
              for seed in spec["seeds"] or [None]
            )
          ]
      planned = list({rid: (rid, vs) for runs in points.values() for rid, vs in runs}.values())
      log(f"search: pass {pass_}, {field}: {len(planned)} runs at {len(active)} scale(s)")
      status = execute(planned)
      local.check_preempted(status)  # (before a preempted run is taken for a failed one)
      failed |= {rid for rid, s in status.items() if s == "failed"}
      for i in active:
        per_seed = [
          (v, [run_metric(workdir, rid, key) for rid, _ in points[i, v]]) for v in candidates[i]
        ]
        curve = [(v, seed_mean(ms)) for v, ms in per_seed]
        best = min(curve, key=lambda vm: (_order(vm[1]), vm[0] != current[i][field]))[0]
        if best != current[i][field]:
          current[i][field] = best
          changed.add(i)
        curves[i][field], seed_curves[i][field] = curve, per_seed
        choices.append(
          dict(
            scale=rules.label(spec["scales"][i]),
            **{"pass": pass_},
            field=field,
            value=best,
            metric=dict(curve)[best],
            changed=i in changed,
          )
        )
    active = [i for i in active if i in changed]
    if not active:
      break
  return current, curves, seed_curves, choices, failed


def seed_mean(metrics):
  """The seeds' mean; None (diverged) if any seed diverged or failed."""
  return None if any(m is None for m in metrics) else sum(metrics) / len(metrics)


def _with(values, v):
  """The grid, and the current value if it is off the grid (it competes too)."""
  return list(values) + ([v] if v not in values else [])


def run_metric(workdir, rid, key):
  """A finished run's final metric; None if it failed or diverged."""
  path = jobs.result_path(workdir, rid)
  if not os.path.exists(path):
    return None  # the run failed
  with open(path) as f:
    result = json.load(f)
  return None if result["diverged"] else result.get(key)


def _order(m):
  return m if m is not None and math.isfinite(m) else math.inf


def _write(workdir, spec, choices, rows, curves):
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  with open(os.path.join(workdir, "choices.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(choices[0]))
    w.writeheader()
    w.writerows(choices)
  labels = [rules.label(s) for s in spec["scales"]]
  lines = [
    "| scale | pass | field | chosen | " + spec["metric"] + " | changed |",
    "|---|---|---|---|---|---|",
  ]
  lines += [
    f"| {c['scale']} | {c['pass']} | {c['field']} | {fmt(c['value'])} | "
    f"{fmt(c['metric'])} | {c['changed']} |"
    for c in choices
  ]
  write_text(os.path.join(workdir, "choices.md"), "\n".join(lines) + "\n")
  table = [
    "| hyperparameter | "
    + " | ".join(f"optimum ({l})" for l in labels)
    + " | optimum shifts | shifted by | loss spread | sensitive | sensitive to scale |",
    "|---|" + "---|" * (len(labels) + 5),
  ]
  for r in rows:
    table.append(
      f"| {r['field']} | "
      + " | ".join(fmt(v) for v in r["optima"])
      + f" | {r['shifts']} | {', '.join(r['cause']) or '-'} | "
      f"{fmt(r['spread'])} | {r['sensitive']} | {r['scale_sensitive']} |"
    )
  text = (
    f"Sensitivity threshold: {spec['sensitivity']} relative spread of the final "
    f"{spec['metric']} over a hyperparameter's grid (inf: some values diverged).\n\n"
    + "\n".join(table)
    + "\n"
  )
  write_text(os.path.join(workdir, "classification.md"), text)
  write_json(os.path.join(workdir, "classification.json"), rows)
  os.makedirs(os.path.join(workdir, "sensitivity"), exist_ok=True)
  for field in spec["space"]:
    sensitivity.plot(
      field,
      [c[field] for c in curves],
      labels,
      os.path.join(workdir, "sensitivity", field.split(".")[-1] + ".png"),
    )
