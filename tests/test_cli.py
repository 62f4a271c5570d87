"""The command line: real subprocesses, real files, one-line errors with exit code 2."""

import csv


from tests.commands import adamlab


def test_coordcheck_writes_csv_png_and_slopes(tmp_path):
  out = tmp_path / "cc"
  r = adamlab(
    "coordcheck",
    "--config",
    "configs/mlp.py:mup,adamw",
    "--widths",
    "16,32,64",
    "--steps",
    "2",
    "--out",
    str(out),
    "--config.model.base_width=16",
    "--config.optimizer.learning_rate=0.01",
  )
  assert r.returncode == 0, r.stderr
  rows = list(csv.DictReader(open(out / "coords.csv")))
  assert {r["width"] for r in rows} == {"16", "32", "64"}
  assert {r["step"] for r in rows} == {"0", "1", "2"}
  assert {r["layer"] for r in rows} == {"hidden0", "hidden1", "logits"}
  assert (out / "coordcheck.png").stat().st_size > 10_000
  assert "hidden1" in r.stdout and "mlp, mup, adamw" in r.stdout
