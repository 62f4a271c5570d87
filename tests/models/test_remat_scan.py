"""model.remat and model.scan_layers change what is kept and what is compiled, never the
numbers: the same losses over 10 steps, one device or 8, and checkpoints load either way."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from adamlab import models
from adamlab.errors import ConfigError
from adamlab.train.step import initial_state, make_train_step
from adamlab.train import coordcheck, optimizer

ROOT = pathlib.Path(__file__).parents[2]
SWITCHES = [(remat, scan) for scan in (False, True) for remat in ("none", "block", "no_attention")]


def config(name, **model):
  c = ml_collections.ConfigDict(
    dict(
      model=models.default_config(name),
      optimizer=optimizer.default_config(),
      parametrization="mup",
      alignment="full",
    )
  )
  c.model.update(dict(width=32, base_width=16, depth=2, num_heads=2))
  if name == "gpt":  # dropout too: each block's mask must be the same either way
    c.model.update(dict(seq_len=16, dropout=0.1, positions="rotary"))
  else:
    c.model.update(dict(patch_size=7))
  c.model.update(model)
  c.optimizer.update(dict(name="stable_adamw", learning_rate=1e-2, warmup_steps=2))
  return c


def trajectory(c, steps=10):
  """Losses and the last step's metrics of `steps` optimizer steps."""
  key = jax.random.PRNGKey(0)
  model, table = optimizer.build_model(c, key)
  apply, params = models.functional(model)
  tx = optimizer.build(c.optimizer, table, params)
  task = models.task(c.model)
  step = jax.jit(make_train_step(task.objective(apply), tx, dropout=c.model.dropout > 0))
  state = initial_state(params, tx.init(params), jax.random.key_data(key))
  x, y = task.fixed_batch(4, jax.random.PRNGKey(1))  # one batch: even the ViT learns it
  losses = []
  for _ in range(steps):
    state, metrics = step(state, x, y)
    losses.append(float(metrics["loss"]))
  return np.array(losses), metrics


@pytest.mark.parametrize("name", ["gpt", "vit"])
def test_switches_keep_the_loss_trajectory(name):
  base, _ = trajectory(config(name))
  assert base[-1] < base[0]  # it learns
  for remat, scan in SWITCHES[1:]:
    losses, metrics = trajectory(config(name, remat=remat, scan_layers=scan))
    # Remat and scan change XLA's fusion, so the order of float32 sums: each step's
    # loss may move by a few roundings (2^-24 relative each), and the differences
    # compound through the params over the steps; measured up to 1.3e-6 at step 10.
    # A real defect (a block skipped, a gradient lost) moves the loss by > 1e-3.
    np.testing.assert_allclose(losses, base, rtol=1e-5, err_msg=f"{remat}, scan {scan}")
    # Per-layer RMS_t telemetry still names each block.
    assert {f"rms/blocks.{i}.attn.qkv.kernel" for i in range(2)} <= set(metrics)


@pytest.mark.parametrize("name", ["gpt", "vit"])
def test_scanned_blocks_keep_names_table_and_coordinate_check_layers(name):
  plain, table = optimizer.build_model(config(name, depth=3), jax.random.PRNGKey(0))
  scanned, scanned_table = optimizer.build_model(
    config(name, depth=3, scan_layers=True, remat="block"), jax.random.PRNGKey(0)
  )
  assert jax.tree.structure(scanned_table) == jax.tree.structure(table)
  axes = lambda m: [
    (p, v.get_metadata("axes")) for p, v in nnx.iter_graph(m) if isinstance(v, nnx.Param)
  ]
  assert axes(scanned) == axes(plain) and ("blocks", 2, "mlp", "up", "kernel") in dict(axes(plain))
  x = models.task(config(name).model).fixed_batch(2, jax.random.PRNGKey(1))[0]
  np.testing.assert_allclose(scanned(x), plain(x), rtol=1e-6, atol=1e-6)
  # The coordinate check finds each block's tags in the scan, under the unrolled names.
  batch = models.task(config(name).model).fixed_batch(2, jax.random.PRNGKey(1))
  want = coordcheck.run(config(name, depth=3), widths=[32], steps=0, batch=batch)
  got = coordcheck.run(config(name, depth=3, scan_layers=True), widths=[32], steps=0, batch=batch)
  assert [r["layer"] for r in got] == [r["layer"] for r in want]
  assert "block2.out" in {r["layer"] for r in got}  # one entry per block, in order
  # (the same float32 sums in another fusion order: a few roundings, as above)
  np.testing.assert_allclose([r["rms"] for r in got], [r["rms"] for r in want], rtol=1e-6)


def test_bad_remat_names_the_field_and_the_choices():
  with pytest.raises(
    ConfigError, match="^model.remat = 'all': must be one of 'none', 'block', 'no_attention'$"
  ):
    optimizer.build_model(config("gpt", remat="all"), jax.random.PRNGKey(0))


SMALL = [
  "--config",
  "configs/gpt.py:mup,stable_adamw",
  "--config.model.width=32",
  "--config.model.base_width=16",
  "--config.model.depth=2",
  "--config.model.num_heads=2",
  "--config.model.seq_len=32",
  "--config.batch_size=8",
  "--config.steps=6",
  "--config.log_every=1",
  "--config.eval_every=100",
  "--config.eval_batches=1",
  "--config.optimizer.warmup_steps=2",
]


def losses_of_runs(workdir, runs):
  """{name: losses} of `adamlab.train.run` for each {name: extra flags}, in this process."""
  from adamlab.train import run
  from adamlab.train.config import load

  out = {}
  for name, extra in runs.items():
    run(load(SMALL + extra)[0], os.path.join(workdir, name), log=lambda *_: None)
    with open(os.path.join(workdir, name, "metrics.jsonl")) as f:
      out[name] = [json.loads(line)["loss"] for line in f]
  return out


EIGHT = {
  "remat_block": ["--config.model.remat=block"],
  "remat_no_attention": ["--config.model.remat=no_attention"],
  "scan_layers": ["--config.model.scan_layers=True"],
}
MESH = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]


def test_eight_devices_with_each_switch_match_one_device(tmp_path):
  one = losses_of_runs(str(tmp_path), {"one": []})["one"]
  script = (
    "import json, sys; from tests.models.test_remat_scan import losses_of_runs, EIGHT, "
    "MESH; print(json.dumps(losses_of_runs(sys.argv[1], "
    "{k: v + MESH for k, v in EIGHT.items()})))"
  )
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  r = subprocess.run(
    [sys.executable, "-c", script, str(tmp_path / "eight")],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr
  eight = json.loads(r.stdout.strip().splitlines()[-1])
  assert len(one) == 6 and one[-1] < one[0]
  for name, losses in eight.items():
    np.testing.assert_allclose(losses, one, rtol=1e-5, err_msg=name)


def test_checkpoint_written_unscanned_loads_scanned(tmp_path):
  """The trainer's checkpoint of a run without scan restores into the state of a model
  with scan_layers (and remat) on, and gives the same loss."""
  from adamlab.train.config import load

  losses_of_runs(str(tmp_path), {"plain": ["--config.steps=3"]})
  c = load(SMALL + ["--config.model.scan_layers=True", "--config.model.remat=block"])[0]
  key = jax.random.PRNGKey(c.seed)
  model, table = optimizer.build_model(c, key)
  apply, params = models.functional(model)
  tx = optimizer.build(c.optimizer, table, params)
  abstract = jax.eval_shape(
    lambda: initial_state(params, tx.init(params), jax.random.key_data(key))
  )
  with ocp.CheckpointManager(tmp_path / "plain" / "checkpoints") as mngr:
    assert mngr.latest_step() == 3
    saved = mngr.restore(3, args=ocp.args.StandardRestore(abstract))["params"]
  plain_apply = models.functional(optimizer.build_model(load(SMALL)[0], key)[0])[0]
  task = models.task(c.model)
  x, y = task.fixed_batch(4, jax.random.PRNGKey(2))
  loss = lambda fn: float(task.objective(fn)(saved, x, y)[0])
  assert loss(apply) == pytest.approx(loss(plain_apply), rel=1e-6)
