"""Corrupted checkpoints: a truncated or garbled newest checkpoint is reported, and the
run resumes from the previous good one and redoes the same steps."""

import pytest

from tests.train.test_trainer import rows, science, train

ARGS = ["--config.steps=12", "--config.log_every=1", "--config.checkpoint_every=4"]


@pytest.mark.parametrize("damage", ["garble", "truncate"])
def test_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
  r = train(tmp_path / "run", *ARGS)
  assert r.returncode == 0, r.stderr
  want = [science(row) for row in rows(tmp_path / "run")]
  newest = tmp_path / "run" / "checkpoints" / "12"
  files = [p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 0]
  assert files
  for p in files:
    data = p.read_bytes()
    p.write_bytes(b"\x00garbage" * 3 if damage == "garble" else data[: len(data) // 2])
  r = train(tmp_path / "run", *ARGS)
  assert r.returncode == 0, r.stderr
  assert "checkpoint 12 is unreadable" in r.stdout
  assert "resumed" in r.stdout and "at step 8" in r.stdout
  assert [science(row) for row in rows(tmp_path / "run")] == want  # steps 9-12 redone, same
