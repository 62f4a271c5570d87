"""Sweep results: results.csv, a markdown table and the best value per group."""

import csv
import io
import json
import math
import os

from adamlab.files import write_text

COLUMNS = (
  "diverged",
  "final_loss",
  "best_loss",
  "final_eval_loss",
  "best_eval_loss",
  "final_eval_accuracy",
)


def collect(workdir: str):
  """(grid fields, rows): one row per run of the sweep, finished or not."""
  with open(os.path.join(workdir, "sweep.json")) as f:
    plan = json.load(f)
  fields = list(plan["runs"][0]["values"]) if plan["runs"] else []
  rows = []
  for run in plan["runs"]:
    path = os.path.join(workdir, run["id"], "result.json")
    result = {}
    if os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
    rows.append(
      dict(
        id=run["id"],
        **run["values"],
        status="done" if result else "missing",
        **{k: result.get(k) for k in COLUMNS},
      )
    )
  return plan["sweep"], fields, rows


def metric_key(metric: str) -> str:
  """The result.json field of a metric: "eval_loss" is its final value."""
  return metric if metric.startswith(("final_", "best_")) else "final_" + metric


def best_per_group(rows, fields, best_of: str, metric: str):
  """For each combination of the other grid fields, the run with the lowest final metric."""
  key = metric_key(metric)
  groups = {}
  for r in rows:
    value = r.get(key)
    if r["status"] != "done" or r["diverged"] or value is None or not math.isfinite(value):
      continue
    g = tuple((f, r[f]) for f in fields if f != best_of)
    if g not in groups or value < groups[g][key]:
      groups[g] = r
  return [dict(g, **{best_of: r[best_of], key: r[key]}) for g, r in groups.items()]


def write(workdir: str) -> str:
  """Write results.csv and results.md; return the markdown."""
  sweep, fields, rows = collect(workdir)
  header = ["id", *fields, "status", *COLUMNS]
  out = io.StringIO()
  w = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
  w.writeheader()
  w.writerows(rows)
  write_text(os.path.join(workdir, "results.csv"), out.getvalue())
  md = [table(header[1:], rows)]
  if sweep.get("best_of") in fields:
    best = best_per_group(rows, fields, sweep["best_of"], sweep.get("metric", "eval_loss"))
    if best:
      md += [
        "",
        f"Best {sweep['best_of']} per group (lowest {sweep.get('metric', 'eval_loss')}):",
        "",
        table(list(best[0]), best),
      ]
  text = "\n".join(md) + "\n"
  write_text(os.path.join(workdir, "results.md"), text)
  return text


def table(columns, rows) -> str:
  """A markdown table; floats to 4 significant digits, None as empty."""
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines)
