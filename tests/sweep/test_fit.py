"""`adamlab fit`, for real: a search's fixed set, seeds, a rule per field, a held-out scale."""

import json
import math
import re

import numpy as np
import pytest

from adamlab.analysis import transfer
from adamlab.errors import ConfigError
from adamlab.sweep import fit, grid
from tests.commands import adamlab
from tests.sweep.test_sweep import sweep_file

TINY = {
  "model.base_width": 16,
  "model.depth": 1,
  "model.num_heads": 2,
  "model.seq_len": 16,
  "batch_size": 4,
  "optimizer.warmup_steps": 2,
  "eval_batches": 2,
  "log_every": 4,
  "max_nonfinite": 2,
  "steps": 8,
  "plots": False,  # ~1 s a run, 52 runs
}
SEARCH = f"""
def get_search(arg=""):
  return dict(base="configs/gpt.py:sp,adamw", fixed={TINY!r}, scales=[{{"model.width": 16}}],
              space={{"optimizer.b2": [0.9, 0.99]}}, metric="eval_loss", max_passes=1)
"""
RULES = """
def get_rules(arg=""):
  return dict(base="configs/gpt.py:sp,adamw", search=SEARCH_DIR, fixed={"eval_batches": 2},
              scales={"model.width": [16, 24, 32, 40, 48]},
              space={"optimizer.learning_rate": [0.01, 0.03, 0.1, 0.3, 1.0]},
              baseline={"optimizer.learning_rate": 0.1}, seeds=[0, 1],
              holdout=[{"model.width": 48}], max_passes=1, boots=200)
"""
LRS = [0.01, 0.03, 0.1, 0.3, 1.0]
WIDTHS = [16, 24, 32, 40, 48]


def _loss(workdir, values):
  result = json.load(open(workdir / grid.run_id(values) / "result.json"))
  return math.inf if result["diverged"] else result["final_eval_loss"]


def test_fit_takes_the_search_fixed_set_fits_and_predicts_the_holdout(tmp_path):
  search_dir, fit_dir = tmp_path / "s", tmp_path / "f"
  r = adamlab("search", "--config", sweep_file(tmp_path, SEARCH), "--workdir", str(search_dir))
  assert r.returncode == 0, r.stderr
  (tmp_path / "rules.py").write_text(RULES.replace("SEARCH_DIR", repr(str(search_dir))))
  args = ("fit", "--config", str(tmp_path / "rules.py"), "--workdir", str(fit_dir))
  r = adamlab(*args, "--pack", "5", "--workers", "2")
  assert r.returncode == 0, r.stderr
  # The fixed set: the search's b2 (its only field, not sensitive to scale) and fixed.
  b2 = json.load(open(search_dir / "classification.json"))[0]["optima"][0]
  spec = json.load(open(fit_dir / "fit.json"))["rules"]
  assert spec["fixed"] == {**TINY, "optimizer.b2": b2, "eval_batches": 2}
  out = json.load(open(fit_dir / "rules.json"))["optimizer.learning_rate"]
  rule, (pred,) = out["rule"], out["predictions"]
  # Each scale's optimum: the parabola vertex of the two seeds' mean eval loss (read
  # back from the runs), the same formula as transfer.optimum.
  ys = []
  for w, point in zip(WIDTHS, rule["points"]):
    mean = [
      np.mean(
        [
          _loss(fit_dir, {"model.width": w, "optimizer.learning_rate": lr, "seed": s})
          for s in (0, 1)
        ]
      )
      for lr in LRS
    ]
    ref = transfer.optimum(list(np.log2(LRS)), mean)
    assert point["log_x"] == pytest.approx(ref["x"], abs=1e-9) and point["held_out"] == (w == 48)
    ys.append(ref["x"])
  # The exponent: least squares over the fitted scales with an interior optimum.
  used = [(w, y) for w, y, p in zip(WIDTHS, ys, rule["points"]) if p["used"]]
  slope = np.polyfit(np.log2([w for w, _ in used]), [y for _, y in used], 1)[0]
  assert rule["exponents"]["model.width"] == pytest.approx(slope, abs=1e-9)
  assert rule["boots_used"] >= 180 and len(rule["replicates"]) == rule["boots_used"]
  # The held-out width was trained at the predicted lr, once per seed.
  at_pred = [
    _loss(fit_dir, {"model.width": 48, "optimizer.learning_rate": pred["predicted"], "seed": s})
    for s in (0, 1)
  ]
  assert pred["loss_at_predicted"] == pytest.approx(np.mean(at_pred), rel=1e-12)
  assert pred["error_octaves"] == pytest.approx(
    math.log2(pred["predicted"]) - rule["points"][-1]["log_x"], abs=1e-9
  )
  text = (fit_dir / "rules.md").read_text()
  assert "| model.width |" in text and "Held out and predicted" in text
  assert (fit_dir / "rules" / "learning_rate.png").stat().st_size > 1000
  assert len((fit_dir / "optima.csv").read_text().splitlines()) == 1 + len(WIDTHS)
  r = adamlab(*args)  # a second fit trains nothing
  assert r.returncode == 0 and "to run (0 jobs)" in r.stdout and "0 to run" in r.stdout


@pytest.mark.parametrize(
  "change,needle",
  [
    (('holdout=[{"model.width": 48}]', 'holdout=[{"depth": 2}]'), "rules.holdout"),
    (("boots=200", "boots=10"), "rules.boots"),
    (("max_passes=1", "level=1.5"), "rules.level"),
    (("[0.01, 0.03, 0.1, 0.3, 1.0]", "[0.0, 0.1, 0.3]"), "rules.space.optimizer.learning_rate"),
    (("[16, 24, 32, 40, 48]", "[16]"), "rules.scales"),
    (('holdout=[{"model.width": 48}]', 'holdout=[{"model.width": 64}]'), "rules.holdout"),
    (
      ('holdout=[{"model.width": 48}]', 'holdout=[{"model.width": 24}, {"model.width": 32}]'),
      "rules.holdout",
    ),
    (("[0.01, 0.03, 0.1, 0.3, 1.0]", "[0.1]"), "rules.space.optimizer.learning_rate"),
    (
      ('space={"optimizer.learning_rate": [0.01, 0.03, 0.1, 0.3, 1.0]}', "space=[0.1]"),
      "rules.space",
    ),
    (("seeds=[0, 1]", "seeds=[0, 0]"), "rules.seeds"),
    (("SEARCH_DIR", "'/nonexistent'"), "rules.search"),
    (("seeds=[0, 1]", "seeds=[-1]"), "rules.seeds"),
  ],
)
def test_bad_rules_files_are_reported_before_anything_runs(tmp_path, change, needle):
  path = tmp_path / "rules.py"
  text = RULES.replace(*change)
  path.write_text(text.replace("search=SEARCH_DIR, ", ""))  # (no search unless the case has one)
  with pytest.raises(ConfigError, match=re.escape(needle)):
    fit.prepare(str(path), str(tmp_path / "f"))
  assert not (tmp_path / "f").exists()


def test_a_bad_rules_file_is_one_line_and_exit_code_2(tmp_path):
  path = tmp_path / "rules.py"
  path.write_text(RULES.replace("search=SEARCH_DIR, ", "").replace("boots=200", "boots=10"))
  r = adamlab("fit", "--config", str(path), "--workdir", str(tmp_path / "f"))
  assert r.returncode == 2 and "rules.boots" in r.stderr and r.stderr.count("\n") == 1, r.stderr
  assert not (tmp_path / "f").exists()
