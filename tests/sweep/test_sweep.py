"""Sweeps, for real: grids, stable ids, the local executor with subprocesses, results."""

import csv
import json
import os

import numpy as np
import pytest

from adamlab.errors import ConfigError
from adamlab.sweep import grid, results
from tests.commands import adamlab

SWEEP = """
def get_sweep(arg=""):
  return dict(
      base="configs/gpt.py:adamw",
      fixed={"steps": 6, "model.base_width": 16, "model.depth": 1, "model.num_heads": 2,
             "model.seq_len": 16, "batch_size": 4, "optimizer.warmup_steps": 2,
             "eval_every": 3, "eval_batches": 1, "log_every": 3, "max_nonfinite": 2},
      axes=[{"model.width": [16, 32]}, {"optimizer.learning_rate": [1e-3, 1e-2]}],
      best_of="optimizer.learning_rate", metric="eval_loss")
"""


def sweep_file(tmp_path, text=SWEEP):
  path = tmp_path / "sweep.py"
  path.write_text(text)
  return str(path)


def test_grid_products_zips_and_stable_ids(tmp_path):
  s = grid.load_sweep(sweep_file(tmp_path))
  planned = grid.runs(s)
  assert [v for _, v in planned] == [
    {"model.width": w, "optimizer.learning_rate": lr} for w in (16, 32) for lr in (1e-3, 1e-2)
  ]
  assert [r for r, _ in planned] == [r for r, _ in grid.runs(s)]  # stable
  assert len({r for r, _ in planned}) == 4
  zipped = dict(
    s, axes=[{"parametrization": ["sp", "mup"], "optimizer.per_layer_lr": [False, True]}]
  )
  assert [v for _, v in grid.runs(zipped)] == [
    {"parametrization": "sp", "optimizer.per_layer_lr": False},
    {"parametrization": "mup", "optimizer.per_layer_lr": True},
  ]


@pytest.mark.parametrize(
  "axes,needle",
  [
    ([{"model.width": [16, 32], "optimizer.b2": [0.9]}], "sweep.axes[0]"),
    ([{"model.width": []}], "sweep.axes[0]"),
    ([{"model.widht": [16]}], "model.widht: no such field"),
    ([{"optimizer.b2": [0.9, 1.0]}], "optimizer.b2 = 1.0"),
    ([{"model.width": [16, 33]}], "model.width = 33"),
  ],
)
def test_bad_grids_are_reported_before_anything_runs(tmp_path, axes, needle):
  text = SWEEP.replace(
    'axes=[{"model.width": [16, 32]}, {"optimizer.learning_rate": [1e-3, 1e-2]}]', f"axes={axes!r}"
  )
  r = adamlab("sweep", "--config", sweep_file(tmp_path, text), "--workdir", str(tmp_path / "s"))
  assert r.returncode == 2 and needle in r.stderr, r.stderr
  assert r.stderr.count("\n") == 1
  assert not (tmp_path / "s").exists()


def test_local_sweep_runs_once_skips_done_and_tabulates(tmp_path):
  workdir = tmp_path / "s"
  r = adamlab(
    "sweep", "--config", sweep_file(tmp_path), "--workdir", str(workdir), "--workers", "2"
  )
  assert r.returncode == 0, r.stderr
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
  assert all(float(r["final_eval_loss"]) > 0 and r["diverged"] == "False" for r in rows)
  md = (workdir / "results.md").read_text()
  assert "Best optimizer.learning_rate per group" in md
  # Again: nothing to run. Remove one result: only that run runs (and resumes its dir).
  r = adamlab("sweep", "--config", sweep_file(tmp_path), "--workdir", str(workdir))
  assert "4 already done, 0 to run" in r.stdout
  victim = json.load(open(workdir / "sweep.json"))["runs"][1]["id"]
  os.remove(workdir / victim / "result.json")
  r = adamlab("sweep", "--config", sweep_file(tmp_path), "--workdir", str(workdir))
  assert "3 already done, 1 to run" in r.stdout and r.returncode == 0
  r = adamlab("results", str(workdir))
  assert r.returncode == 0 and "| 32 | 0.01 |" in r.stdout


def test_diverged_runs_are_results(tmp_path):
  # A learning rate of 1e30 without gradient clipping overflows from the first step.
  text = SWEEP.replace(
    '{"optimizer.learning_rate": [1e-3, 1e-2]}', '{"optimizer.learning_rate": [1e30]}'
  ).replace('"steps": 6,', '"steps": 6, "optimizer.grad_clip_norm": 0.0,')
  r = adamlab("sweep", "--config", sweep_file(tmp_path, text), "--workdir", str(tmp_path / "s"))
  assert r.returncode == 0, r.stderr
  _, _, rows = results.collect(str(tmp_path / "s"))
  assert [r["diverged"] for r in rows] == [True, True]
  assert (
    results.best_per_group(
      rows, ["model.width", "optimizer.learning_rate"], "optimizer.learning_rate", "eval_loss"
    )
    == []
  )


def test_best_per_group_picks_the_lowest_finite_metric():
  rows = [
    dict(w=1, lr=a, status="done", diverged=d, final_eval_loss=l)
    for a, d, l in ((0.1, False, 2.0), (0.2, False, 1.5), (0.4, True, None))
  ]
  rows += [dict(w=2, lr=0.1, status="done", diverged=False, final_eval_loss=float("nan"))]
  assert results.best_per_group(rows, ["w", "lr"], "lr", "eval_loss") == [
    {"w": 1, "lr": 0.2, "final_eval_loss": 1.5}
  ]
  with pytest.raises(ConfigError, match=r"sweep.axes\[0\]"):
    grid.runs(dict(axes=[{"x": "notalist"}]))


PACKABLE = SWEEP.replace(
  '{"model.width": [16, 32]}, {"optimizer.learning_rate": [1e-3, 1e-2]}',
  '{"optimizer.learning_rate": [1e-3, 1e-2, 1e30]}, {"optimizer.b2": [0.95, 0.99]}',
).replace('"steps": 6,', '"steps": 9, "optimizer.grad_clip_norm": 0.0,')


def test_packed_runs_equal_runs_alone_and_ray_runs_them_too(tmp_path):
  # Six runs differing in lr and b2, one lr so large that it stops on non-finite steps:
  # packed 3 at a time (local) vs one at a time (as Ray tasks).
  path = sweep_file(tmp_path, PACKABLE)
  packed = adamlab("sweep", "--config", path, "--workdir", str(tmp_path / "packed"), "--pack", "3")
  assert packed.returncode == 0, packed.stderr
  assert "(2 jobs)" in packed.stdout
  alone = adamlab(
    "sweep",
    "--config",
    path,
    "--workdir",
    str(tmp_path / "alone"),
    "--backend",
    "ray",
    "--workers",
    "2",
  )
  assert alone.returncode == 0, alone.stderr
  assert "6 to run (6 jobs), 2 worker(s), ray" in alone.stdout
  _, _, a = results.collect(str(tmp_path / "packed"))
  _, _, b = results.collect(str(tmp_path / "alone"))
  assert [r["diverged"] for r in a] == [r["diverged"] for r in b] == [False] * 4 + [True] * 2
  for run in b:
    ra = [json.loads(l) for l in open(tmp_path / "packed" / run["id"] / "metrics.jsonl")]
    rb = [json.loads(l) for l in open(tmp_path / "alone" / run["id"] / "metrics.jsonl")]
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert (tmp_path / "packed" / run["id"] / "stopped.txt").exists() == run["diverged"]
    for key in ("loss", "lr", "grad_norm", "update_rms", "eval_loss", "skipped"):
      x = [r.get(key) for r in ra]
      y = [r.get(key) for r in rb]
      assert [type(v) for v in x] == [type(v) for v in y], key
      np.testing.assert_allclose(
        [v for v in x if isinstance(v, float)],
        [v for v in y if isinstance(v, float)],
        rtol=1e-5,
        err_msg=key,
      )


def test_a_run_that_fails_before_writing_anything_is_failed_not_a_crash(tmp_path):
  # The mesh needs 2 devices: the sweep's checks pass (they use no devices), the run exits 2.
  text = SWEEP.replace(
    '{"model.width": [16, 32]}, {"optimizer.learning_rate": [1e-3, 1e-2]}', '{"mesh.data": [2]}'
  )
  r = adamlab("sweep", "--config", sweep_file(tmp_path, text), "--workdir", str(tmp_path / "s"))
  assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
  assert "0/1 runs finished" in r.stdout and "1 failed" in r.stdout
  _, _, rows = results.collect(str(tmp_path / "s"))
  assert [row["status"] for row in rows] == ["missing"]
