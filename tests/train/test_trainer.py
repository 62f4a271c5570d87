"""The trainer, for real: subprocesses, 8 simulated CPU devices, SIGKILL, Orbax, GCIDE text."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parents[2]
SMALL = ["--config", "configs/gpt.py:mup,stable_adamw", "--config.model.width=32",
         "--config.model.base_width=16", "--config.model.depth=1", "--config.model.num_heads=2",
         "--config.model.seq_len=32", "--config.batch_size=8", "--config.optimizer.warmup_steps=5",
         "--config.eval_every=10", "--config.eval_batches=1"]
TIMING = {"items_per_s", "step_time_s", "model_tflops_per_s", "mfu"}


def train(workdir, *extra, devices=1, wait=True):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "adamlab.cli", "train", "--workdir", str(workdir), *SMALL, *extra]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def rows(workdir):
  return [json.loads(line) for line in open(pathlib.Path(workdir) / "metrics.jsonl")]


def science(row):
  return {k: v for k, v in row.items() if k not in TIMING}


def final_params(workdir):
  import orbax.checkpoint as ocp
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  with ocp.CheckpointManager(directory) as mngr:
    state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  import jax
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(state["params"])[0]}


def test_eight_devices_match_one_device(tmp_path):
  one = train(tmp_path / "one", "--config.steps=20", "--config.log_every=5")
  assert one.returncode == 0, one.stderr
  eight = train(tmp_path / "eight", "--config.steps=20", "--config.log_every=5",
                "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
                devices=8)
  assert eight.returncode == 0, eight.stderr
  a = np.array([r["loss"] for r in rows(tmp_path / "one")])
  b = np.array([r["loss"] for r in rows(tmp_path / "eight")])
  assert len(a) == len(b) == 20
  np.testing.assert_allclose(b, a, rtol=1e-5)
  assert a[-1] < a[0]  # it learns


def test_sigkill_and_resume_is_bitwise_identical(tmp_path):
  args = ["--config.steps=30", "--config.log_every=1", "--config.checkpoint_every=4"]
  ref = train(tmp_path / "ref", *args)
  assert ref.returncode == 0, ref.stderr
  run = tmp_path / "killed"
  for kill_at in (7, 18):  # kill twice, at different points
    proc = train(run, *args, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:
      path = run / "metrics.jsonl"
      if path.exists() and sum(1 for _ in open(path)) >= kill_at:
        break
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  done = train(run, *args)
  assert done.returncode == 0, done.stderr
  assert "resumed" in done.stdout
  got, want = rows(run), rows(tmp_path / "ref")
  assert [r["step"] for r in got] == list(range(1, 31))  # none missing, none twice
  assert [science(r) for r in got] == [science(r) for r in want]
  pa, pb = final_params(run), final_params(tmp_path / "ref")
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def test_outputs_of_a_run(tmp_path):
  r = train(tmp_path / "run", "--config.steps=10", "--config.log_every=5")
  assert r.returncode == 0, r.stderr
  run = tmp_path / "run"
  for name in ("config.json", "metrics.jsonl", "loss.png", "lr.png", "rms.png"):
    assert (run / name).stat().st_size > 0, name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "tb"))
  last = rows(run)[-1]
  for key in ("loss", "lr", "grad_norm", "update_rms", "param_norm", "items_per_s",
              "eval_loss", "eval_accuracy", "rms/blocks.0.attn.qkv.kernel"):
    assert key in last, key
  assert json.load(open(run / "config.json"))["parametrization"] == "mup"
  # The same command again resumes the finished run and changes nothing.
  before = (run / "metrics.jsonl").read_text()
  again = train(run, "--config.steps=10", "--config.log_every=5")
  assert again.returncode == 0 and (run / "metrics.jsonl").read_text() == before


BAD = [
    (["--config.mesh.data=3"], 1, "mesh"),
    (["--config.mesh.tensor=3"], 8, "mesh"),
    (["--config.batch_size=7", "--config.mesh.data=2", "--config.mesh.fsdp=4"], 8, "batch_size"),
    (["--config.data.dir=/nonexistent"], 1, "data.path"),
    (["--config.data.name=fashion_mnist"], 1, "data.name"),
    (["--config.data.name=text", "--config.data.path=/nonexistent.txt"], 1, "data.path"),
    (["--config.model.seq_len=0"], 1, "model"),
    (["--config.eval_every=0"], 1, "eval_every"),
    (["--config.ema_decay=1.5"], 1, "ema_decay"),
]


@pytest.mark.parametrize("extra,devices,needle", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, extra, devices, needle):
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "config.json").write_text("{}")
  for workdir in (tmp_path / "new", existing):
    r = train(workdir, "--config.steps=6", *extra, devices=devices)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("adamlab: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert needle in r.stderr
  assert not (tmp_path / "new").exists()
  assert os.listdir(existing) == ["config.json"]


def test_other_configs_workdir_is_refused_and_untouched(tmp_path):
  r = train(tmp_path / "run", "--config.steps=6", "--config.log_every=2")
  assert r.returncode == 0, r.stderr
  before = {p.name: p.stat().st_mtime for p in (tmp_path / "run").iterdir()}
  r = train(tmp_path / "run", "--config.steps=6", "--config.log_every=2",
            "--config.optimizer.b2=0.9")
  assert r.returncode == 2 and "optimizer.b2" in r.stderr
  assert {p.name: p.stat().st_mtime for p in (tmp_path / "run").iterdir()} == before


def test_nonfinite_steps_are_skipped_logged_and_stop_the_run(tmp_path):
  env_train = lambda workdir, steps, *extra: subprocess.run(
      [sys.executable, "-m", "adamlab.cli", "train", "--workdir", str(workdir), *SMALL,
       "--config.steps=20", "--config.log_every=1", "--config.checkpoint_every=5", *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, ADAMLAB_INJECT_NONFINITE=steps, JAX_PLATFORMS="cpu"))
  # Two bad steps: skipped (params unchanged across them), logged, and the run goes on.
  r = env_train(tmp_path / "skip", "6,7")
  assert r.returncode == 0, r.stderr
  got = rows(tmp_path / "skip")
  assert [row["skipped"] for row in got] == [1.0 if s in (6, 7) else 0.0 for s in range(1, 21)]
  assert got[5]["param_norm"] == got[6]["param_norm"] == got[4]["param_norm"]
  assert all(np.isfinite(row["param_norm"]) for row in got)
  # max_nonfinite in a row: exit 3, a clear message, and a finite checkpoint of step 8.
  r = env_train(tmp_path / "stop", "9,10,11,12,13,14,15", "--config.max_nonfinite=3")
  assert r.returncode == 3  # stopped on non-finite steps
  last = r.stderr.strip().splitlines()[-1]  # above it: the progress lines
  assert last.startswith("adamlab: training stopped: 3 non-finite steps in a row"), last
  params = final_params(tmp_path / "stop")
  assert all(np.all(np.isfinite(v)) for v in params.values())
  # rewind_skip: back to the checkpoint before the bad steps, skip batches, finish.
  r = env_train(tmp_path / "rewind", "9,10,11", "--config.max_nonfinite=3",
                "--config.rewind_skip=4")
  assert r.returncode == 0, r.stderr
  assert "rewound to step 5" in r.stdout
  got = rows(tmp_path / "rewind")
  assert [row["step"] for row in got] == list(range(1, 21))
  assert all(np.isfinite(row["loss"]) for row in got if row["step"] > 11)


def test_dropout_and_tied_embeddings_train(tmp_path):
  r = train(tmp_path / "run", "--config.steps=6", "--config.log_every=3",
            "--config.model.dropout=0.1", "--config.model.tied_embeddings=True")
  assert r.returncode == 0, r.stderr
  got = rows(tmp_path / "run")
  assert all(np.isfinite(row["loss"]) for row in got) and "readout" not in json.dumps(got[-1])


def test_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path):
  args = ["--config.steps=12", "--config.log_every=1", "--config.checkpoint_every=4"]
  r = train(tmp_path / "run", *args)
  assert r.returncode == 0, r.stderr
  want = [science(row) for row in rows(tmp_path / "run")]
  newest = tmp_path / "run" / "checkpoints" / "12"
  files = [p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 0]
  assert files
  for p in files:  # garble every file of the newest checkpoint
    p.write_bytes(b"\x00garbage" * 3)
  r = train(tmp_path / "run", *args)
  assert r.returncode == 0, r.stderr
  assert "checkpoint 12 is unreadable" in r.stdout and "resumed" in r.stdout
  assert "at step 8" in r.stdout
  assert [science(row) for row in rows(tmp_path / "run")] == want  # steps 9-12 redone, same
