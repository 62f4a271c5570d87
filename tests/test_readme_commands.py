"""Every command of the README's trainer block runs, for real, read from the README itself.

The commands are parsed from the ```bash block under "## The trainer: configs, sweeps,
searches", so a README edit cannot drop one silently. Each runs as a subprocess with
tiny overrides appended (few steps, tiny models, a temporary directory). `sweep`,
`search` and `fit` take no `--config.x=y` flags: each runs a copy of the README's own
spec (its getter called with the README's argument), shrunk, and search and fit add
--workers 2 --pack N (one program per scale). Widths below the base width are ordinary
muTransfer (tuning narrower than the reference): coordcheck runs width 64 under base
128 as written, a train runs 32 under 128, and sweep, search and fit run 16 under 32.
"""

import csv
import json
import math
import pathlib
import shlex

from adamlab.sweep import fit, grid, search
from adamlab.train.config import load
from tests.commands import adamlab

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## The trainer: configs, sweeps, searches"
NAMES = ["train", "coordcheck", "sweep", "search", "fit"]

# A tiny GPT for every run: one block, 16 bytes of context, a 4-sequence batch.
TINY_MODEL = {"model.depth": 1, "model.num_heads": 2, "model.seq_len": 16, "batch_size": 4}
# For the grids: a few steps, one eval batch, no checkpoints or plots; base width 32 so
# that width 16 (and 24) run below it.
TINY_RUN = {
  **TINY_MODEL,
  "model.base_width": 32,
  "steps": 8,
  "optimizer.warmup_steps": 2,
  "eval_every": 8,
  "eval_batches": 1,
  "log_every": 4,
  "checkpoint_every": 10**6,
  "max_nonfinite": 2,
  "plots": False,
}


def readme_commands() -> dict:
  """{subcommand: argv after `adamlab`} of the README's trainer block, in order."""
  text = (ROOT / "README.md").read_text()
  block = text.split(SECTION, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
  out = {}
  for line in block.splitlines():
    argv = shlex.split(line, comments=True)
    if argv:
      assert argv[0] == "adamlab", line
      assert argv[1] not in out, line
      out[argv[1]] = argv[1:]
  return out


COMMANDS = readme_commands()


def _set(argv: list, flag: str, value: str) -> list:
  """argv with the value after `flag` (which the README's command has) replaced."""
  i = argv.index(flag)
  return argv[: i + 1] + [value] + argv[i + 2 :]


def _ok(r) -> None:
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr


def _finite(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x)


SPECS = {  # (getter, defaults) of each spec-file command
  "sweep": ("get_sweep", dict(fixed={}, axes=[], best_of=None, metric="eval_loss")),
  "search": ("get_search", search.DEFAULTS),
  "fit": ("get_rules", fit.DEFAULTS),
}


def _spec_file(tmp_path, name, shrink) -> list:
  """The README's `name` command with --config a file of its spec, shrunk."""
  argv, (getter, defaults) = COMMANDS[name], SPECS[name]
  path, _, arg = argv[argv.index("--config") + 1].partition(":")
  spec = grid.load_spec(f"{ROOT / path}:{arg}", getter, defaults)
  spec = shrink(spec)
  out = tmp_path / f"{getter}.py"
  out.write_text(f"def {getter}(arg=''):\n  return {spec!r}\n")
  return _set(argv, "--config", str(out))


def _spec(argv, name) -> dict:
  """The spec that argv's --config file gives."""
  getter, defaults = SPECS[name]
  return grid.load_spec(argv[argv.index("--config") + 1], getter, defaults)


def _widths(rows) -> set:
  return {int(r["width"]) for r in rows}


def test_the_trainer_block_is_these_commands():
  """A command added to or dropped from the README's block fails here first."""
  assert list(COMMANDS) == NAMES


def _train(tmp_path, *extra):
  workdir = tmp_path / "run"
  argv = _set(COMMANDS["train"], "--workdir", str(workdir))
  tiny = {**TINY_MODEL, "steps": 4, "optimizer.warmup_steps": 1, "eval_every": 4}
  tiny.update(eval_batches=1, log_every=1, checkpoint_every=4, plots=False)
  r = adamlab(*argv, *grid.flags(tiny), *extra)
  _ok(r)
  lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3, 4]
  assert all(_finite(m["loss"]) for m in lines if "loss" in m)
  assert _finite(lines[-1]["eval_loss"])
  return json.load(open(workdir / "config.json"))


def test_readme_train(tmp_path):
  config = _train(tmp_path)
  # The README's own presets and override took effect.
  assert config["parametrization"] == "mup" and config["optimizer"]["name"] == "stable_adamw"
  assert config["optimizer"]["b2"] == 0.95


def test_readme_train_below_the_base_width(tmp_path):
  config = _train(tmp_path, "--config.model.width=32", "--config.model.base_width=128")
  assert (config["model"]["width"], config["model"]["base_width"]) == (32, 128)


def test_readme_coordcheck_as_written_runs_width_64_under_base_128(tmp_path):
  out = tmp_path / "cc"
  argv = _set(COMMANDS["coordcheck"], "--out", str(out))
  r = adamlab(*argv, *grid.flags(TINY_MODEL))
  _ok(r)
  written = [int(w) for w in argv[argv.index("--widths") + 1].split(",")]
  config, _ = load(["--config=" + argv[argv.index("--config") + 1]])
  assert min(written) < config.model.base_width  # the README's widths start below base
  rows = list(csv.DictReader(open(out / "coords.csv")))
  assert _widths(rows) == set(written)
  steps = int(argv[argv.index("--steps") + 1])
  assert {int(r["step"]) for r in rows} == set(range(steps + 1))
  assert all(math.isfinite(float(r["rms"])) and float(r["rms"]) > 0 for r in rows)
  assert (out / "coordcheck.png").stat().st_size > 10_000


def _shrink_sweep(spec):
  """The README's sweep at width 16 (under base 32): each of its other axes at its first
  value but the parametrization arms (all of them)."""
  axes = []
  for axis in spec["axes"]:
    keep = None if "parametrization" in axis else 1
    axes.append({k: [16] if k == "model.width" else list(v)[:keep] for k, v in axis.items()})
  return {**spec, "fixed": {**spec["fixed"], **TINY_RUN}, "axes": axes}


def test_readme_sweep(tmp_path):
  workdir = tmp_path / "sweep"
  argv = _set(_spec_file(tmp_path, "sweep", _shrink_sweep), "--workdir", str(workdir))
  r = adamlab(*argv)
  _ok(r)
  planned = grid.runs(grid.load_sweep(argv[argv.index("--config") + 1]))
  rows = list(csv.DictReader(open(workdir / "results.csv")))
  assert len(rows) == len(planned) >= 2
  assert {r["parametrization"] for r in rows} >= {"sp", "mup"}
  assert {int(r["model.width"]) for r in rows} == {16}  # below base 32
  assert all(math.isfinite(float(r["final_eval_loss"])) for r in rows), rows


def _runs(workdir) -> list:
  """(config, result) of every run under a search or fit directory."""
  return [
    (json.load(open(p.parent / "config.json")), json.load(open(p)))
    for p in workdir.glob("*/result.json")
  ]


def _shrink_search(spec):
  """The README's search at widths 16 (under base 32) and 32, over its first
  hyperparameter's first two values, one pass."""
  field, values = next(iter(spec["space"].items()))
  baseline = {k: v for k, v in spec["baseline"].items() if k == field}
  if field in baseline and baseline[field] not in values[:2]:
    baseline[field] = values[0]
  return {
    **spec,
    "fixed": {**spec["fixed"], **TINY_RUN},
    "scales": [{"model.width": 16}, {"model.width": 32}],
    "space": {field: list(values[:2])},
    "baseline": baseline,
    "max_passes": 1,
  }


def test_readme_search(tmp_path):
  workdir = tmp_path / "search"
  argv = _set(_spec_file(tmp_path, "search", _shrink_search), "--workdir", str(workdir))
  r = adamlab(*argv, "--workers", "2", "--pack", "2")
  _ok(r)
  rows = json.load(open(workdir / "classification.json"))
  assert [row["field"] for row in rows] == ["optimizer.learning_rate"]
  assert all(_finite(x) for x in rows[0]["optima"])
  runs = _runs(workdir)
  assert len(runs) == 4 and {c["model"]["width"] for c, _ in runs} == {16, 32}
  assert all(_finite(result["final_eval_loss"]) for _, result in runs)


FIT_WIDTHS = [16, 24, 32, 40, 48]  # 16 and 24 under base 32; 48 held out


def _shrink_fit(spec):
  """The README's rules over widths alone (16 to 48, base 32), one seed, its whole
  learning-rate grid (one program per width: --pack)."""
  return {
    **spec,
    "fixed": {**spec["fixed"], **TINY_RUN},
    "scales": [{"model.width": w} for w in FIT_WIDTHS],
    "holdout": [{"model.width": FIT_WIDTHS[-1]}],
    "seeds": [0],
  }


def test_readme_fit(tmp_path):
  workdir = tmp_path / "fit"
  argv = _set(_spec_file(tmp_path, "fit", _shrink_fit), "--workdir", str(workdir))
  lrs = _spec(argv, "fit")["space"]["optimizer.learning_rate"]
  r = adamlab(*argv, "--workers", "2", "--pack", str(len(lrs)))
  _ok(r)
  out = json.load(open(workdir / "rules.json"))["optimizer.learning_rate"]
  points = out["rule"]["points"]
  assert len(points) == len(FIT_WIDTHS) and all(_finite(p["log_x"]) for p in points)
  (pred,) = out["predictions"]
  assert _finite(pred["loss_at_predicted"])
  runs = _runs(workdir)
  assert {c["model"]["width"] for c, _ in runs} == set(FIT_WIDTHS)
  assert all(c["model"]["base_width"] == 32 for c, _ in runs)
  finite = [result["final_eval_loss"] for _, result in runs if not result["diverged"]]
  assert len(finite) > len(runs) // 2 and all(_finite(x) for x in finite)
  assert (workdir / "optima.csv").is_file() and (workdir / "rules.md").is_file()
