import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from adamlab import optim


def params(width):
  return {"embed": jnp.ones((10, width)), "hidden": jnp.ones((width, width)),
          "readout": jnp.ones((width, 3)), "bias": jnp.zeros((width,))}


def config(**opt):
  c = ml_collections.ConfigDict()
  c.optimizer = optim.default_config()
  c.optimizer.update(opt)
  c.parametrization = "sp"
  c.alignment = "full"
  return c


def run(tx, p, steps=5, seed=0):
  state = tx.init(p)
  rng = np.random.default_rng(seed)
  for _ in range(steps):
    g = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), p)
    u, state = tx.update(g, state, p)
    p = optax.apply_updates(p, u)
  return p, state


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("parametrization", ["sp", "mup"])
def test_every_optimizer_builds_and_steps(name, parametrization):
  c = config(name=name, schedule="wsd", warmup_steps=2, total_steps=10)
  c.parametrization = parametrization
  tx = optim.build(c, params(16), params(8))
  p, state = run(tx, params(16))
  # and under jit, where hyperparameters are traced
  jax.jit(tx.update)(jax.tree.map(jnp.ones_like, p), jax.jit(tx.init)(p), p)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))
  assert not np.allclose(p["hidden"], 1.0)


def test_adamw_is_optax_adamw_with_global_clip_and_schedule():
  c = config(name="adamw", learning_rate=3e-3, b1=0.8, b2=0.97, eps=1e-7, weight_decay=0.1,
             grad_clip_norm=0.5, warmup_steps=2, total_steps=5, final_lr_ratio=0.1)
  ours, _ = run(optim.build(c, params(8)), params(8))
  mask = jax.tree.map(lambda x: x.ndim >= 2, params(8))
  sched = optim.warmup_cosine(3e-3, 2, 5, 0.1)
  ref = optax.chain(optax.clip_by_global_norm(0.5),
                    optax.adamw(sched, 0.8, 0.97, 1e-7, weight_decay=0.1, mask=mask))
  theirs, _ = run(ref, params(8))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9), ours, theirs)


def test_learning_rate_is_in_the_state_and_mup_scales_it():
  c = config(name="stable_adamw", schedule="constant", warmup_steps=0, learning_rate=0.01,
             grad_clip_norm=0.0)
  c.parametrization = "mup"
  tx = optim.build(c, params(32), params(8))
  _, state = run(tx, params(32), steps=1)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)
  # Same gradient, same optimizer state: the hidden step is 1/4 of SP's at m = 4.
  g = jax.tree.map(jnp.ones_like, params(32))
  u_mup, _ = tx.update(g, tx.init(params(32)), params(32))
  c.parametrization = "sp"
  c.optimizer.per_layer_lr = False  # plain SP: one global learning rate
  sp = optim.build(c, params(32), params(8))
  u_sp, _ = sp.update(g, sp.init(params(32)), params(32))
  np.testing.assert_allclose(u_mup["hidden"], u_sp["hidden"] / 4, rtol=1e-5)
  np.testing.assert_allclose(u_mup["embed"], u_sp["embed"] / 2, rtol=1e-5)
  c.optimizer.per_layer_lr = True  # SP with Everett et al.'s per-layer rates: hidden 1/m
  sp_layer = optim.build(c, params(32), params(8))
  u_spl, _ = sp_layer.update(g, sp_layer.init(params(32)), params(32))
  np.testing.assert_allclose(u_spl["hidden"], u_sp["hidden"] / 4, rtol=1e-5)
  np.testing.assert_allclose(u_spl["embed"], u_sp["embed"], rtol=1e-5)


def test_weight_decay_skips_vectors_by_default():
  c = config(name="adamw", weight_decay=0.5, schedule="constant", warmup_steps=0,
             grad_clip_norm=0.0)
  p = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
  tx = optim.build(c, p)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  assert float(jnp.abs(u["b"]).max()) == 0.0 and float(jnp.abs(u["w"]).max()) > 0
  c.optimizer.decay_vectors = True
  tx = optim.build(c, p)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  assert float(jnp.abs(u["b"]).max()) > 0


BAD = [
    ("name", "adamm", "optimizer.name"),
    ("b1", 1.0, "optimizer.b1"),
    ("b2", 1.0, "optimizer.b2"),
    ("b2", -0.1, "optimizer.b2"),
    ("learning_rate", -1e-3, "optimizer.learning_rate"),
    ("learning_rate", float("nan"), "optimizer.learning_rate"),
    ("eps", -1e-8, "optimizer.eps"),
    ("weight_decay", -0.1, "optimizer.weight_decay"),
    ("grad_clip_norm", -1.0, "optimizer.grad_clip_norm"),
    ("clip_threshold", 0.0, "optimizer.clip_threshold"),
    ("schedule", "cosine", "optimizer.schedule"),
    ("warmup_steps", 2000, "optimizer.warmup_steps"),
    ("total_steps", 0, "optimizer.total_steps"),
    ("final_lr_ratio", 1.5, "optimizer.final_lr_ratio"),
    ("a", 0.0, "optimizer.a"),
    ("momentum", 1.0, "optimizer.momentum"),
]


@pytest.mark.parametrize("field,value,name", BAD)
def test_bad_values_name_the_field(field, value, name):
  c = config()
  c.optimizer[field] = value
  with pytest.raises(optim.ConfigError) as err:
    optim.build(c, params(8))
  assert str(err.value).startswith(name + " = ")
  assert "must be" in str(err.value) and "\n" not in str(err.value)


def test_unknown_field_and_bad_parametrization():
  c = config()
  c.optimizer.unlock()
  c.optimizer.beta2 = 0.9
  with pytest.raises(optim.ConfigError, match="optimizer.beta2"):
    optim.build(c, params(8))
  c = config()
  c.parametrization = "mu_p"
  with pytest.raises(optim.ConfigError, match="parametrization = 'mu_p'.*'mup'"):
    optim.build(c, params(8))
  c = config()
  c.alignment = "partial"
  with pytest.raises(optim.ConfigError, match="alignment"):
    optim.build(c, params(8))


def test_schedules():
  s = optim.warmup_cosine(1.0, 10, 110, 0.1)
  assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(1.0)
  assert float(s(60)) == pytest.approx(0.55, rel=1e-4) and float(s(110)) == pytest.approx(0.1)
  w = optim.wsd(1.0, 10, 100, 0.0, decay_fraction=0.2)
  assert float(w(5)) == pytest.approx(0.5) and float(w(50)) == 1.0 and float(w(80)) == 1.0
  assert float(w(90)) == pytest.approx(0.5) and float(w(100)) == pytest.approx(0.0)
  c = optim.constant(2.0, 4)
  assert float(c(2)) == pytest.approx(1.0) and float(c(1000)) == 2.0
  assert float(optim.constant(2.0)(0)) == 2.0
