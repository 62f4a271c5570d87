"""Coordinate-descent search, for real (subprocess runs), and the sensitivity analysis."""

import json
import math
import os

import pytest

from adamlab.analysis import sensitivity
from adamlab.errors import ConfigError
from adamlab.files import write_json
from adamlab.sweep import grid, search
from tests.commands import adamlab
from tests.sweep.test_sweep import sweep_file

SEARCH = """
def get_search(arg=""):
  return dict(
      base="configs/gpt.py:sp,adamw",
      fixed={"model.base_width": 16, "model.depth": 1, "model.num_heads": 2,
             "model.seq_len": 16, "batch_size": 4, "optimizer.warmup_steps": 2,
             "eval_batches": 1, "log_every": 3, "max_nonfinite": 2},
      scales=[{"model.width": 16, "steps": 6}, {"model.width": 32, "steps": 6}],
      space={"optimizer.learning_rate": [1e-3, 1e-2, 1e30], "optimizer.b2": [0.9, 0.99]},
      baseline={"optimizer.learning_rate": 1e-3},
      metric="eval_loss", max_passes=3)
"""


def test_coordinate_descent_converges_reuses_runs_and_classifies(tmp_path):
  path, workdir = sweep_file(tmp_path, SEARCH), tmp_path / "s"
  r = adamlab("search", "--config", path, "--workdir", str(workdir), "--pack", "3")
  assert r.returncode == 0, r.stderr
  choices = [l.split(" | ") for l in (workdir / "choices.md").read_text().splitlines()[2:]]
  # Each pass picks, per scale, the value with the lowest final eval loss among its
  # 1-D grid with the other hyperparameter at its current value (diverged: never).
  current = {
    0: {"optimizer.learning_rate": 1e-3, "optimizer.b2": 0.95},
    1: {"optimizer.learning_rate": 1e-3, "optimizer.b2": 0.95},
  }
  scales = [{"model.width": 16, "steps": 6}, {"model.width": 32, "steps": 6}]
  passes = {int(c[1]) for c in choices}
  assert passes == {1, 2}  # pass 2 changes nothing, so the descent stops
  for row in choices:
    i = 0 if "width=16" in row[0] else 1
    field = row[2]
    space = {"optimizer.learning_rate": [1e-3, 1e-2, 1e30], "optimizer.b2": [0.9, 0.99]}[field]
    values = space + ([current[i][field]] if current[i][field] not in space else [])
    losses = {}
    for v in values:
      rid = grid.run_id({**scales[i], **current[i], field: v})
      result = json.load(open(workdir / rid / "result.json"))
      losses[v] = math.inf if result["diverged"] else result["final_eval_loss"]
    if field.endswith("learning_rate"):
      assert losses[1e30] == math.inf  # diverged: a result, never chosen
    best = min(values, key=lambda v: (losses[v], v != current[i][field]))
    assert float(row[3]) == pytest.approx(best, rel=1e-3), (row, losses)
    current[i][field] = best
  table = (workdir / "classification.md").read_text()
  assert "| optimizer.learning_rate |" in table and "| inf | True |" in table
  assert (workdir / "sensitivity" / "learning_rate.png").stat().st_size > 1000
  # Every point ran once; a second search finds them all.
  n_runs = len([d for d in os.listdir(workdir) if "=" in d])
  r = adamlab("search", "--config", path, "--workdir", str(workdir))
  assert r.returncode == 0 and "to run (0 jobs)" in r.stdout and " 0 already done" not in r.stdout
  assert len([d for d in os.listdir(workdir) if "=" in d]) == n_runs


@pytest.mark.parametrize(
  "change,needle",
  [
    (('"optimizer.b2": [0.9, 0.99]', '"optimizer.b2": []'), "search.space"),
    (
      ('baseline={"optimizer.learning_rate": 1e-3}', 'baseline={"optimizer.b1": 0.9}'),
      "search.baseline.optimizer.b1",
    ),
    (('"optimizer.b2": [0.9, 0.99]', '"optimizer.b2": [0.9, 1.0]'), "optimizer.b2 = 1.0"),
    (("max_passes=3", "max_passes=0"), "search.max_passes"),
    (('metric="eval_loss"', 'metrc="eval_loss"'), "search.metrc"),
  ],
)
def test_bad_searches_are_reported_before_anything_runs(tmp_path, change, needle):
  path = sweep_file(tmp_path, SEARCH.replace(*change))
  r = adamlab("search", "--config", path, "--workdir", str(tmp_path / "s"))
  assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
  assert not (tmp_path / "s").exists()


def test_classify_shift_cause_and_sensitivity():
  scales = [{"w": 64, "steps": 100}, {"w": 64, "steps": 200}, {"w": 128, "steps": 100}]
  optima = [{"lr": 4e-3, "eps": 1e-10}, {"lr": 4e-3, "eps": 1e-20}, {"lr": 2e-3, "eps": 1e-10}]
  flat = [(1e-10, 3.000), (1e-20, 3.001), (1e-30, 3.002)]
  curves = [{"lr": [(2e-3, 3.2), (4e-3, 3.0), (8e-3, None)], "eps": flat} for _ in scales]
  rows = {r["field"]: r for r in sensitivity.classify(scales, optima, curves, threshold=0.01)}
  assert rows["lr"]["shifts"] and rows["lr"]["cause"] == ["w"]
  assert rows["lr"]["spread"] == math.inf and rows["lr"]["scale_sensitive"]
  assert rows["eps"]["shifts"] and rows["eps"]["cause"] == ["steps"]
  assert rows["eps"]["spread"] == pytest.approx(0.002 / 3.0)
  assert not rows["eps"]["sensitive"] and not rows["eps"]["scale_sensitive"]
  assert sensitivity.spread([(1, 2.0), (2, 3.0)]) == pytest.approx(0.5)


def test_a_search_written_before_seeds_existed_still_resumes(tmp_path):
  path, workdir = sweep_file(tmp_path, SEARCH), tmp_path / "s"
  spec = grid.load_spec(path, "get_search", search.DEFAULTS)
  old = {k: v for k, v in spec.items() if k != "seeds"}
  workdir.mkdir()
  write_json(str(workdir / "search.json"), dict(search=old))
  assert search.prepare(path, str(workdir))[0]["seeds"] == []
  # ... while a directory of another search is refused.
  write_json(str(workdir / "search.json"), dict(search={**old, "max_passes": 1}))
  with pytest.raises(ConfigError, match="--workdir"):
    search.prepare(path, str(workdir))
