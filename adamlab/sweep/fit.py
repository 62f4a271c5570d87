"""Scaling rules from a search (step 3 of the AdamW tuning method): `adamlab fit`.

    adamlab fit --config configs/rules/gpt.py:quick,mup --workdir rules/gpt-mup --pack 8

A rules file is Python with `get_rules(arg)` returning a plain dict, a search file's
keys (see adamlab.sweep.search) with `scales` as a product, and a few more:

    dict(base="configs/gpt.py:mup,adamw",
         search="searches/adamw",        # optional: a search directory; its chosen
                                         # values of fields not in space join fixed,
                                         # its scale-sensitive fields join space
         fixed={"eval_batches": 4},      # wins over the search's values
         scales={"model.width": [32, 64, 128], "steps": [100, 200]},  # the product
         space={"optimizer.learning_rate": [2.0**k for k in range(-10, -3)]},
         seeds=[0, 1],
         holdout=[{"model.width": 128}],  # scales not fitted, but predicted and measured
         metric="eval_loss", max_passes=2, level=0.9, boots=1000)

`scales` may also be a list of dicts (any design). At every scale, a coordinate
descent over `space` with the fixed set held, each point trained per seed. Then, per
field of space, a power law for its optimum in the scale fields that vary
(adamlab.analysis.rules), fitted outside the holdout; at each held-out scale the
rule's prediction is trained too and compared with the grid's optimum. Runs are
addressed by their values, so a re-run reuses them. Writes rules.json, rules.md,
optima.csv and rules/<field>.png.
"""

import csv
import io
import itertools
import json
import math
import os

import numpy as np

from adamlab.analysis import rules
from adamlab.errors import ConfigError
from adamlab.files import write_json, write_text
from adamlab.sweep import grid, jobs, local, results, search
from adamlab.train.checks import check_dir

DEFAULTS = dict(
  search.DEFAULTS, search="", holdout=[], max_passes=2, level=0.9, boots=1000, seeds=[0, 1]
)
del DEFAULTS["sensitivity"]


def prepare(path_arg: str, workdir: str):
  """Load and check the rules file (every run's config) before anything runs."""
  spec = grid.load_spec(path_arg, "get_rules", DEFAULTS)
  if not isinstance(spec["search"], str):
    raise ConfigError("rules.search", spec["search"], "a search directory, or '' for none")
  if not isinstance(spec["level"], float) or not 0 < spec["level"] < 1:
    raise ConfigError("rules.level", spec["level"], "a confidence level in (0, 1)")
  if not isinstance(spec["boots"], int) or spec["boots"] < 100:
    raise ConfigError("rules.boots", spec["boots"], "an integer >= 100")
  if isinstance(spec["scales"], dict):
    spec["scales"] = _product(spec["scales"])
  search.check_shape(spec, "rules")
  if spec["search"]:
    spec = _with_search(spec)
  for f, values in spec["space"].items():
    if len(values) < 3 or not all(isinstance(v, (int, float)) and v > 0 for v in values):
      raise ConfigError(
        f"rules.space.{f}", values, "3 or more positive numbers (the rule is a power law)"
      )
  fields = _check_design(spec)
  sweep, baselines = search.check(spec, "rules")
  check_dir(workdir, "fit.json", dict(rules=spec), "fit")
  return spec, sweep, baselines, fields


def _check_design(spec: dict) -> list:
  """The scale fields that vary; the holdout's scales; enough fitted scales, varying in
  every field. Returns the fields."""
  scales = spec["scales"]
  names = dict.fromkeys(k for s in scales for k in s)
  fields = [k for k in names if len({_key(s.get(k)) for s in scales}) > 1]
  if not fields:
    raise ConfigError("rules.scales", scales, "scales that vary in at least one field")
  for s in scales:
    for f in fields:
      if not isinstance(s.get(f), (int, float)) or not s[f] > 0:
        raise ConfigError(f"rules.scales.{f}", s.get(f), "a positive number at every scale")
  if not isinstance(spec["holdout"], list) or not all(
    isinstance(h, dict) and h and set(h) <= set(fields) for h in spec["holdout"]
  ):
    raise ConfigError("rules.holdout", spec["holdout"], f"a list of dicts of fields of {fields}")
  for h in spec["holdout"]:
    if not any(rules.held_out(s, [h]) for s in scales):
      raise ConfigError("rules.holdout", h, "a scale of rules.scales")
  fitted = [s for s in scales if not rules.held_out(s, spec["holdout"])]
  design = np.array([[1.0] + [math.log2(s[f]) for f in fields] for s in fitted]).reshape(
    -1, len(fields) + 1
  )
  if len(fitted) < len(fields) + 3 or np.linalg.matrix_rank(design) < len(fields) + 1:
    raise ConfigError(
      "rules.holdout",
      spec["holdout"],
      f"one that leaves {len(fields) + 3} or more scales to fit, varying in each of {fields}",
    )
  return fields


def _product(scales: dict) -> list:
  if not scales or not all(isinstance(v, (list, tuple)) and v for v in scales.values()):
    raise ConfigError("rules.scales", scales, "a dict of field -> non-empty list, or a list")
  return [dict(zip(scales, values)) for values in itertools.product(*scales.values())]


def _key(v):
  return json.dumps(v, sort_keys=True)


def _with_search(spec: dict) -> dict:
  """The search's fixed set joins `fixed`, its scale-sensitive fields join `space`."""
  path = spec["search"]
  try:
    with open(os.path.join(path, "search.json")) as f:
      searched = json.load(f)["search"]
    with open(os.path.join(path, "classification.json")) as f:
      rows = json.load(f)
    classified = [(r["field"], r["scale_sensitive"], r["optima"]) for r in rows]
    grids, fixed = searched["space"], dict(searched["fixed"])
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise ConfigError(
      "rules.search", path, f"a search directory written by `adamlab search` ({err})"
    )
  space = dict(spec["space"])
  for field, sensitive, optima in classified:
    if field in space or field in spec["fixed"]:
      continue  # (the rules file's own grid or value wins)
    if sensitive:
      space[field] = grids[field]
    else:  # the value chosen at the most scales
      keys = [_key(v) for v in optima]
      fixed[field] = max(optima, key=lambda v: keys.count(_key(v)))
  return {**spec, "fixed": {**fixed, **spec["fixed"]}, "space": space}


def run(
  path_arg: str,
  workdir: str,
  workers: int = 1,
  backend: str = "local",
  pack: int = 1,
  address: str = "",
  log=print,
) -> dict:
  """Search every scale, fit a rule per field of space, test it on the holdout.

  Returns {field: {"rule": the fit, "predictions": [per held-out scale]}, "failed": n}.
  """
  local.check_executor(workers, pack)
  spec, sweep, baselines, fields = prepare(path_arg, workdir)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "fit.json"), dict(rules=spec))
  execute = lambda planned: local.execute(
    sweep, workdir, planned, workers, backend, pack, address, log
  )
  out = {}
  with jobs.forwarding_signals():
    current, _, seed_curves, _, failed = search.descend(spec, baselines, workdir, execute, log)
    for field in spec["space"]:
      scale_curves = rules.curves(_rows(spec, seed_curves, field), field, "metric", fields)
      try:
        rule = rules.fit(scale_curves, fields, spec["level"], spec["boots"], 0, spec["holdout"])
      except ValueError as err:  # (e.g. too few optima inside the grid: widen it)
        raise ConfigError(f"adamlab fit: {field}: {err}") from err
      held = [i for i, p in enumerate(rule["points"]) if p["held_out"]]
      checks = [_predict(spec, rule, field, i, scale_curves[i], current[i]) for i in held]
      status = execute([run for c in checks for run in c.pop("runs")])
      local.check_preempted(status)
      failed |= {rid for rid, s in status.items() if s == "failed"}
      key = results.metric_key(spec["metric"])
      for c in checks:
        c["loss_at_predicted"] = search.seed_mean(
          [search.run_metric(workdir, r, key) for r in c["ids"]]
        )
      out[field] = dict(rule=rule, predictions=checks)
  _write(workdir, spec, fields, out)
  return dict(out, failed=len(failed))


def _rows(spec, seed_curves, field) -> list:
  """The last 1-D sweep of `field` at every scale, one row per (scale, seed, value)."""
  seeds = spec["seeds"] or [0]
  return [
    {**scale, field: v, "seed": seed, "metric": m}
    for scale, curves in zip(spec["scales"], seed_curves)
    for v, metrics in curves[field]
    for seed, m in zip(seeds, metrics)
  ]


def _predict(spec, rule, field, i, curve, current) -> dict:
  """Held-out scale i: the rule's prediction, the measured optimum, and the runs (one
  per seed) that train at the prediction. With several fields in space, the others
  stay at the values this scale's own descent chose."""
  p = rules.predict(rule, curve["scale"])
  x = float(f"{p['x']:.6g}")  # (a run id that does not depend on the last float bits)
  measured = rule["points"][i]["log_x"]
  runs = [
    (grid.run_id(values), values)
    for values in (
      search.seeded({**spec["scales"][i], **current, field: x}, seed)
      for seed in spec["seeds"] or [None]
    )
  ]
  return dict(
    scale=curve["scale"],
    predicted=x,
    low=p["low"],
    high=p["high"],
    measured=None if measured is None else 2.0**measured,
    at_edge=rule["points"][i]["at_edge"],
    error_octaves=None if measured is None else math.log2(x) - measured,
    inside=measured is not None and p["low"] <= 2.0**measured <= p["high"],
    best_grid_loss=float(curve["losses"].mean(axis=0).min()),
    runs=runs,
    ids=[rid for rid, _ in runs],
  )


def _write(workdir: str, spec: dict, fields: list, out: dict) -> None:
  write_json(os.path.join(workdir, "rules.json"), out)
  os.makedirs(os.path.join(workdir, "rules"), exist_ok=True)
  lines = [f"# Scaling rules ({spec['metric']}, {spec['level']:.0%} intervals)", ""]
  table = io.StringIO()
  w = csv.writer(table, lineterminator="\n")
  w.writerow(["field", *fields, "log2_optimum", "at_edge", "held_out", "used", "residual"])
  for field, o in out.items():
    rule = o["rule"]
    for p in rule["points"]:
      w.writerow(
        [field, *(p["scale"][k] for k in fields), p["log_x"], p["at_edge"], p["held_out"]]
        + [p["used"], p.get("residual", "")]
      )
    lines += rules.describe(rule, field, o["predictions"])
    name = field.split(".")[-1]
    rules.plot(rule, o["predictions"], field, os.path.join(workdir, "rules", name + ".png"))
  write_text(os.path.join(workdir, "optima.csv"), table.getvalue())
  write_text(os.path.join(workdir, "rules.md"), "\n".join(lines) + "\n")
