"""Weights & Biases beside TensorBoard: a real run in W&B's offline mode, read back from
the transaction log W&B writes (no network)."""

import glob
import json
import os
import struct
import zlib

import pytest

from tests.train.test_trainer import SMALL, rows, train

BLOCK = 32 * 1024  # the .wandb log's block size (LevelDB's log format)
HEADER = struct.Struct("<IHB")  # a chunk: crc32 of type + data, data length, type
FULL, LAST = 1, 4  # chunk types that end a record (FIRST = 2 and MIDDLE = 3 do not)


def wandb_records(path):
  """The protobuf Records of a .wandb transaction log, each chunk's crc32 checked."""
  from wandb.proto.wandb_internal_pb2 import Record

  data = open(path, "rb").read()
  assert data[:4] == b":W&B", "not a W&B transaction log"
  i, pending, records = 7, b"", []  # (7: ident, magic and version)
  while i < len(data):
    left = BLOCK - i % BLOCK
    if left < HEADER.size:  # a block's tail too short for a chunk is padding
      i += left
      continue
    crc, n, kind = HEADER.unpack_from(data, i)
    chunk = data[i + HEADER.size : i + HEADER.size + n]
    assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"a corrupt chunk at {i}"
    i += HEADER.size + n
    pending += chunk
    if kind in (FULL, LAST):
      records.append(Record.FromString(pending))
      pending = b""
  return records


def logged(records):
  """(run record, {step: {key: value}}) of one offline run's records."""
  run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
  history = {}
  for r in records:
    if r.WhichOneof("record_type") == "history":
      items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
      history[r.history.step.num] = items
  return run, history


@pytest.fixture
def offline(tmp_path, monkeypatch):
  """W&B offline, every file it writes under tmp_path; the W&B runs' logs, newest last."""
  pytest.importorskip("wandb")
  for var, sub in (
    ("WANDB_DIR", "wb"),
    ("WANDB_CONFIG_DIR", "wb-config"),
    ("WANDB_CACHE_DIR", "wb-cache"),
    ("WANDB_DATA_DIR", "wb-data"),
  ):
    monkeypatch.setenv(var, str(tmp_path / sub))
  monkeypatch.setenv("WANDB_MODE", "offline")
  return lambda: sorted(
    glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / "*.wandb")), key=os.path.getmtime
  )


def test_an_offline_run_logs_every_metric_and_a_resume_keeps_its_id(tmp_path, offline):
  run_dir = tmp_path / "run"
  args = (
    "--config.steps=10",
    "--config.log_every=5",
    "--config.wandb.mode=offline",
    "--config.wandb.project=adamlab-test",
  )
  r = train(run_dir, *args)
  assert r.returncode == 0, r.stderr
  logs = offline()
  assert len(logs) == 1
  run, history = logged(wandb_records(logs[0]))
  expected = rows(run_dir)
  # Every step of metrics.jsonl, with the same values (one Python float, twice in JSON).
  assert sorted(history) == [row["step"] for row in expected] == list(range(1, 11))
  for row in expected:
    got = history[row["step"]]
    assert got["loss"] == row["loss"]
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)):
        assert got[k] == v, (row["step"], k)
  assert "rms/blocks.0.attn.qkv.kernel" in history[10]  # StableAdamW's per-layer RMS_t
  assert "eval_loss" in history[10]
  # The run: named after its directory, the run's config, its id kept for a resume.
  run_id = (run_dir / "wandb_id.txt").read_text().strip()
  assert run.run_id == run_id and run.display_name == "run" and run.project == "adamlab-test"
  config = {u.key: json.loads(u.value_json) for u in run.config.update}
  assert config["parametrization"] == "mup" and config["wandb"]["mode"] == "offline"
  # The same command resumes the finished run: the same W&B run, nothing logged twice.
  again = train(run_dir, *args)
  assert again.returncode == 0, again.stderr
  logs = offline()
  assert len(logs) == 2
  resumed, history = logged(wandb_records(logs[1]))
  assert resumed.run_id == run_id and history == {}


def test_a_wrong_mode_is_one_line_naming_the_field(tmp_path):
  r = train(tmp_path / "run", "--config.wandb.mode=on")
  assert r.returncode == 2
  assert r.stderr.strip().count("\n") == 0 and "wandb.mode" in r.stderr, r.stderr
  assert not (tmp_path / "run").exists()


def test_a_sweep_groups_its_runs_by_its_directory_when_wandb_is_on(tmp_path):
  from adamlab.sweep import grid, jobs
  from adamlab.train.config import load

  base = next(a for a in SMALL if a.startswith("configs/"))
  values = {"optimizer.learning_rate": 0.01}
  sweep = dict(base=base, fixed={"steps": 5, "wandb.mode": "offline"})
  overrides = jobs._overrides(sweep, values, str(tmp_path / "mutransfer"))
  config, _ = load(["--config=" + base] + grid.flags(overrides))
  assert config.wandb.group == "mutransfer" and config.wandb.mode == "offline"
  # W&B off: the runs' configs are what they were.
  sweep["fixed"]["wandb.mode"] = "off"
  assert "wandb.group" not in jobs._overrides(sweep, values, str(tmp_path / "mutransfer"))


def test_a_run_saved_before_the_wandb_section_existed_still_resumes(tmp_path):
  from adamlab.errors import ConfigError
  from adamlab.train.checks import check_workdir
  from adamlab.train.config import load

  config, _ = load(SMALL)
  saved = json.loads(config.to_json())
  del saved["wandb"]  # a config.json written by an older adamlab
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert check_workdir(str(tmp_path), config) is True
  config.wandb.mode = "offline"  # not the saved run's setting: refused, naming it
  with pytest.raises(ConfigError, match="wandb.mode"):
    check_workdir(str(tmp_path), config)
