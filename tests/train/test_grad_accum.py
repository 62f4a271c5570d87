"""Gradient accumulation: K microbatches give one batch of the same global size's loss,
gradients and training run (to 1e-5), alone, packed and on 8 simulated devices."""

import jax
import ml_collections
import numpy as np
import pytest

from adamlab import models, train
from adamlab.train.config import base
from adamlab.train.step import loss_and_grads
from adamlab.train import optimizer
from tests.train.test_trainer import rows, train as train_cli


def small(model="gpt", accum=1, steps=6):
  c = base(model)
  c.parametrization = "mup"
  if model == "gpt":
    c.model.update(dict(width=32, base_width=16, depth=1, num_heads=2, seq_len=16))
  else:
    c.data.name = "fashion_mnist"
    c.model.update(dict(width=64, base_width=32))
  c.optimizer.update(dict(name="stable_adamw", learning_rate=3e-3, warmup_steps=2))
  c.update(
    dict(
      steps=steps,
      batch_size=16,
      grad_accum_steps=accum,
      log_every=1,
      eval_every=steps,
      eval_batches=1,
      checkpoint_every=100,
    )
  )
  return c


@pytest.mark.parametrize("model", ["gpt", "mlp"])
def test_microbatch_gradients_equal_the_batch_gradient(model):
  c = small(model)
  net, _ = optimizer.build_model(c, jax.random.PRNGKey(0))
  apply, params = models.functional(net)
  objective = models.task(c.model).objective(apply)
  x, y = train.check_config_mesh_and_data(c)[2].batch(3)
  (loss, aux), grads = jax.jit(lambda p: loss_and_grads(objective, p, x, y))(params)
  for k in (2, 4, 16):
    (loss_k, aux_k), grads_k = jax.jit(lambda p: loss_and_grads(objective, p, x, y, accum_steps=k))(
      params
    )
    np.testing.assert_allclose(loss_k, loss, rtol=1e-5)
    np.testing.assert_allclose(aux_k["accuracy"], aux["accuracy"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads_k), jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
      assert a.dtype == b.dtype


def _series(workdir, key):
  return np.array([r[key] for r in rows(workdir)])


def test_accumulated_training_equals_the_global_batch_alone_and_packed(tmp_path):
  one = small(accum=1)
  four = small(accum=4)
  train.run(one, str(tmp_path / "one"), log=lambda *_: None)
  train.run(four, str(tmp_path / "four"), log=lambda *_: None)
  # RMS_t of StableAdamW is computed on the accumulated gradient: the same as the batch's.
  for key in ("loss", "grad_norm", "update_rms", "rms/blocks.0.attn.qkv.kernel", "eval_loss"):
    a = _series(tmp_path / "one", key) if key != "eval_loss" else rows(tmp_path / "one")[-1][key]
    b = _series(tmp_path / "four", key) if key != "eval_loss" else rows(tmp_path / "four")[-1][key]
    np.testing.assert_allclose(b, a, rtol=1e-5, err_msg=key)
  # Packed: two learning rates in one vmapped program, each with 4 microbatches.
  packed = [small(accum=4), small(accum=4)]
  packed[1].optimizer.learning_rate = 1e-3
  alone = ml_collections.ConfigDict(packed[1].to_dict())
  alone.grad_accum_steps = 1
  train.run_pack(packed, [str(tmp_path / "p0"), str(tmp_path / "p1")], log=lambda *_: None)
  train.run(alone, str(tmp_path / "alone"), log=lambda *_: None)
  np.testing.assert_allclose(
    _series(tmp_path / "p0", "loss"), _series(tmp_path / "one", "loss"), rtol=1e-5
  )
  np.testing.assert_allclose(
    _series(tmp_path / "p1", "loss"), _series(tmp_path / "alone", "loss"), rtol=1e-5
  )


def test_accumulation_on_eight_devices_matches_one(tmp_path):
  args = ["--config.steps=6", "--config.log_every=1", "--config.batch_size=16"]
  one = train_cli(tmp_path / "one", *args)
  assert one.returncode == 0, one.stderr
  eight = train_cli(
    tmp_path / "eight",
    *args,
    "--config.grad_accum_steps=2",
    "--config.mesh.data=2",
    "--config.mesh.fsdp=2",
    "--config.mesh.tensor=2",
    devices=8,
  )
  assert eight.returncode == 0, eight.stderr
  np.testing.assert_allclose(
    _series(tmp_path / "eight", "loss"), _series(tmp_path / "one", "loss"), rtol=1e-5
  )


@pytest.mark.parametrize(
  "accum,batch,needle",
  [
    (3, 16, "grad_accum_steps = 3: must be a divisor of batch_size (16)"),
    (0, 16, "grad_accum_steps = 0: must be an integer >= 1"),
    (8, 16, "batch_size = 16: must be a multiple of grad_accum_steps x mesh data x fsdp (32)"),
  ],
)
def test_a_batch_that_does_not_divide_is_a_config_error(tmp_path, accum, batch, needle):
  r = train_cli(
    tmp_path / "run",
    f"--config.grad_accum_steps={accum}",
    f"--config.batch_size={batch}",
    "--config.mesh.data=4",
    devices=4,
  )
  assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"adamlab: error: {needle}"]
  assert not (tmp_path / "run").exists()
