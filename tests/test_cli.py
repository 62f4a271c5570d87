"""The command line: real subprocesses, real files, one-line errors with exit code 2."""

import csv
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


def adamlab(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "adamlab.cli", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=600)


def test_coordcheck_writes_csv_png_and_slopes(tmp_path):
  out = tmp_path / "cc"
  r = adamlab("coordcheck", "--config", "configs/mlp.py:mup,adamw", "--widths", "16,32,64",
              "--steps", "2", "--out", str(out), "--config.model.base_width=16",
              "--config.optimizer.learning_rate=0.01")
  assert r.returncode == 0, r.stderr
  rows = list(csv.DictReader(open(out / "coords.csv")))
  assert {r["width"] for r in rows} == {"16", "32", "64"}
  assert {r["step"] for r in rows} == {"0", "1", "2"}
  assert {r["layer"] for r in rows} == {"hidden0", "hidden1", "logits"}
  assert (out / "coordcheck.png").stat().st_size > 10_000
  assert "hidden1" in r.stdout and "mlp, mup, adamw" in r.stdout


BAD = [
    (["coordcheck", "--config", "configs/gpt.py", "--widths", "30"], "model.width = 30"),
    (["coordcheck", "--config", "configs/gpt.py", "--widths", "a,b"], "--widths"),
    (["coordcheck", "--config", "configs/gpt.py", "--widths", "0"], "--widths"),
    (["coordcheck", "--config", "configs/vit.py", "--config.model.patch_size=5"], "model.patch_size"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.model.num_heads=3"], "model.width"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.optimizer.b2=1.0"], "optimizer.b2"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.optimizer.learning_rate=-1"],
     "optimizer.learning_rate"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.optimizer.beta2=0.9"],
     "optimizer.beta2: no such field"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.steps=abc"], "config.steps"),
    (["coordcheck", "--config", "configs/gpt.py:mu"], "config preset = 'mu'"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.parametrization=mu_p"],
     "parametrization = 'mu_p'"),
    (["coordcheck", "--config", "configs/gpt.py", "--config.alignment=half"], "alignment"),
    (["coordcheck", "--config", "configs/nope.py"], "configs/nope.py"),
    (["coordcheck"], "--config"),
    (["coordcheck", "--config", "configs/gpt.py", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice"),
    (["coordcheck", "--config", "configs/gpt.py", "--steps", "x"], "--steps"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
  out = tmp_path / "out"
  r = adamlab(*args, "--out", str(out)) if args[0] == "coordcheck" else adamlab(*args)
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert r.stderr.count("\n") == 1 and r.stderr.startswith("adamlab: error: "), r.stderr
  assert needle in r.stderr, r.stderr
  assert "Traceback" not in r.stderr
  assert not out.exists()


def test_config_file_with_syntax_error(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config(:\n")
  r = adamlab("coordcheck", "--config", str(bad), "--out", str(tmp_path / "o"))
  assert r.returncode == 2 and "SyntaxError" in r.stderr and r.stderr.count("\n") == 1
