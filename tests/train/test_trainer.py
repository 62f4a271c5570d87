"""The trainer, for real: subprocesses, 8 simulated CPU devices, SIGKILL, Orbax, GCIDE text."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).parents[2]
SMALL = [
  "--config",
  "configs/gpt.py:mup,stable_adamw",
  "--config.model.width=32",
  "--config.model.base_width=16",
  "--config.model.depth=1",
  "--config.model.num_heads=2",
  "--config.model.seq_len=32",
  "--config.batch_size=8",
  "--config.optimizer.warmup_steps=5",
  "--config.eval_every=10",
  "--config.eval_batches=1",
]
TIMING = {"items_per_s", "step_time_s", "model_tflops_per_s", "mfu"}


def train(workdir, *extra, devices=1, wait=True):
  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu"
  )
  cmd = [sys.executable, "-m", "adamlab.cli", "train", "--workdir", str(workdir), *SMALL, *extra]
  if not wait:
    return subprocess.Popen(
      cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def rows(workdir):
  return [json.loads(line) for line in open(pathlib.Path(workdir) / "metrics.jsonl")]


def tensorboard_scalars(tb_dir):
  """{(step, tag): value} read back from the TFRecord event files (length, crc, data, crc)."""
  from tensorboardX.proto.event_pb2 import Event

  out = {}
  for name in sorted(os.listdir(tb_dir)):
    data = (pathlib.Path(tb_dir) / name).read_bytes()
    i = 0
    while i < len(data):
      n = int.from_bytes(data[i : i + 8], "little")
      assert i + 12 + n + 4 <= len(data), "a cut-off record"
      event = Event.FromString(data[i + 12 : i + 12 + n])
      i += 12 + n + 4
      for v in event.summary.value:
        out[(event.step, v.tag)] = v.simple_value
  return out


def science(row):
  return {k: v for k, v in row.items() if k not in TIMING}


def final_params(workdir):
  import orbax.checkpoint as ocp

  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  with ocp.CheckpointManager(directory) as mngr:
    state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  import jax

  return {
    jax.tree_util.keystr(p): np.asarray(v)
    for p, v in jax.tree_util.tree_flatten_with_path(state["params"])[0]
  }


def test_eight_devices_match_one_device(tmp_path):
  one = train(tmp_path / "one", "--config.steps=20", "--config.log_every=5")
  assert one.returncode == 0, one.stderr
  eight = train(
    tmp_path / "eight",
    "--config.steps=20",
    "--config.log_every=5",
    "--config.mesh.data=2",
    "--config.mesh.fsdp=2",
    "--config.mesh.tensor=2",
    devices=8,
  )
  assert eight.returncode == 0, eight.stderr
  a = np.array([r["loss"] for r in rows(tmp_path / "one")])
  b = np.array([r["loss"] for r in rows(tmp_path / "eight")])
  assert len(a) == len(b) == 20
  np.testing.assert_allclose(b, a, rtol=1e-5)
  assert a[-1] < a[0]  # it learns


def test_outputs_of_a_run(tmp_path):
  r = train(tmp_path / "run", "--config.steps=10", "--config.log_every=5")
  assert r.returncode == 0, r.stderr
  run = tmp_path / "run"
  for name in ("config.json", "metrics.jsonl", "loss.png", "lr.png", "rms.png"):
    assert (run / name).stat().st_size > 0, name
  # TensorBoard holds every numeric metric of every step, as in metrics.jsonl.
  tb = tensorboard_scalars(run / "tb")
  expected = {
    (r["step"], k): v
    for r in rows(run)
    for k, v in r.items()
    if k != "step" and isinstance(v, (int, float))
  }
  assert tb.keys() == expected.keys()
  np.testing.assert_allclose([tb[k] for k in expected], list(expected.values()), rtol=1e-6)
  # plots = False: the same run directory but for the figures.
  r = train(tmp_path / "bare", "--config.steps=5", "--config.log_every=5", "--config.plots=False")
  assert r.returncode == 0, r.stderr
  assert sorted(os.listdir(tmp_path / "bare")) == [
    "checkpoints",
    "config.json",
    "metrics.jsonl",
    "tb",
  ]
  last = rows(run)[-1]
  for key in (
    "loss",
    "lr",
    "grad_norm",
    "update_rms",
    "param_norm",
    "items_per_s",
    "eval_loss",
    "eval_accuracy",
    "rms/blocks.0.attn.qkv.kernel",
  ):
    assert key in last, key
  assert json.load(open(run / "config.json"))["parametrization"] == "mup"
  # The same command again resumes the finished run and changes nothing.
  before = (run / "metrics.jsonl").read_text()
  again = train(run, "--config.steps=10", "--config.log_every=5")
  assert again.returncode == 0 and (run / "metrics.jsonl").read_text() == before


def test_checkpoints_at_checkpoint_steps_between_log_steps(tmp_path):
  # checkpoint_every need not be a multiple of log_every: steps 3 and 9 log nothing
  # of their own, yet are checkpointed, with every step's metrics written before.
  r = train(
    tmp_path / "run",
    "--config.steps=12",
    "--config.log_every=5",
    "--config.checkpoint_every=3",
    "--config.keep_checkpoints=10",
  )
  assert r.returncode == 0, r.stderr
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager((tmp_path / "run" / "checkpoints").absolute()) as mngr:
    assert list(mngr.all_steps()) == [3, 6, 9, 12]
  assert [row["step"] for row in rows(tmp_path / "run")] == list(range(1, 13))


def test_dropout_and_tied_embeddings_train(tmp_path):
  r = train(
    tmp_path / "run",
    "--config.steps=6",
    "--config.log_every=3",
    "--config.model.dropout=0.1",
    "--config.model.tied_embeddings=True",
  )
  assert r.returncode == 0, r.stderr
  got = rows(tmp_path / "run")
  assert all(np.isfinite(row["loss"]) for row in got) and "readout" not in json.dumps(got[-1])


def test_a_run_saved_before_new_fields_existed_still_resumes(tmp_path):
  import pytest
  from adamlab.train.config import load
  from adamlab.errors import ConfigError
  from adamlab.train.train import check_workdir

  config, _ = load(SMALL)
  saved = json.loads(config.to_json())
  for section, field in (
    ("optimizer", "skip_spikes_k"),
    ("data", "train_size"),
    ("data", "full_batch"),
  ):
    del saved[section][field]  # a config.json written by an older adamlab
  del saved["plots"]  # (a top-level field)
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert check_workdir(str(tmp_path), config) is True
  config.data.train_size = 64  # not the default: not the same run
  with pytest.raises(ConfigError, match="data.train_size"):
    check_workdir(str(tmp_path), config)
  config.data.train_size, config.plots = 0, False
  with pytest.raises(ConfigError, match="plots"):
    check_workdir(str(tmp_path), config)
  (tmp_path / "config.json").write_text("[]")  # readable JSON, but not a config
  with pytest.raises(ConfigError, match="JSON object"):
    check_workdir(str(tmp_path), config)
