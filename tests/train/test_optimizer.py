import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from adamlab import optim
from adamlab.errors import ConfigError
from adamlab.train import optimizer


def params(width):
  return {
    "embed": jnp.ones((10, width)),
    "hidden": jnp.ones((width, width)),
    "readout": jnp.ones((width, 3)),
    "bias": jnp.zeros((width,)),
  }


def config(**opt):
  c = ml_collections.ConfigDict()
  c.optimizer = optimizer.default_config()
  c.optimizer.update(opt)
  c.parametrization = "sp"
  c.alignment = "full"
  return c


def build(c, p, base=None, values=None):
  """optimizer.build for an experiment-style config: the table as models.table makes it."""
  opt = c.optimizer
  # models.table's delta, the model at twice the base width (for this file's params).
  delta = params(2 * (p if base is None else base)["hidden"].shape[0]) if "hidden" in p else None
  table = optim.parametrize(
    base=base,
    target=p,
    delta=delta,
    parametrization=c.parametrization,
    optimizer=optimizer.family(opt.name, opt.get("muon_shape", "spectral")),
    alignment=c.alignment,
    per_layer_lr=opt.per_layer_lr,
    scale_eps=opt.scale_eps,
  )
  return optimizer.build(opt, table, p, values)


def run(tx, p, steps=5, seed=0):
  state = tx.init(p)
  rng = np.random.default_rng(seed)
  for _ in range(steps):
    g = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), p)
    u, state = tx.update(g, state, p)
    p = optax.apply_updates(p, u)
  return p, state


@pytest.mark.parametrize("name", optimizer.OPTIMIZERS)
@pytest.mark.parametrize("parametrization", ["sp", "mup"])
def test_every_optimizer_builds_and_steps(name, parametrization):
  c = config(name=name, schedule="wsd", warmup_steps=2, total_steps=10)
  c.parametrization = parametrization
  tx = build(c, params(16), params(8))
  p, state = run(tx, params(16))
  # and under jit, where hyperparameters are traced
  jax.jit(tx.update)(jax.tree.map(jnp.ones_like, p), jax.jit(tx.init)(p), p)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))
  assert not np.allclose(p["hidden"], 1.0)


def test_adamw_is_optax_adamw_with_global_clip_and_schedule():
  c = config(
    name="adamw",
    learning_rate=3e-3,
    b1=0.8,
    b2=0.97,
    eps=1e-7,
    weight_decay=0.1,
    grad_clip_norm=0.5,
    warmup_steps=2,
    total_steps=5,
    final_lr_ratio=0.1,
  )
  ours, _ = run(build(c, params(8)), params(8))
  mask = jax.tree.map(lambda x: x.ndim >= 2, params(8))
  sched = optim.warmup_cosine(3e-3, 2, 5, 0.1)
  ref = optax.chain(
    optax.clip_by_global_norm(0.5), optax.adamw(sched, 0.8, 0.97, 1e-7, weight_decay=0.1, mask=mask)
  )
  theirs, _ = run(ref, params(8))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9), ours, theirs)


def test_learning_rate_is_in_the_state_and_mup_scales_it():
  c = config(
    name="stable_adamw", schedule="constant", warmup_steps=0, learning_rate=0.01, grad_clip_norm=0.0
  )
  c.parametrization = "mup"
  tx = build(c, params(32), params(8))
  _, state = run(tx, params(32), steps=1)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)
  # Same gradient, same optimizer state: the hidden step is 1/4 of SP's at m = 4.
  g = jax.tree.map(jnp.ones_like, params(32))
  u_mup, _ = tx.update(g, tx.init(params(32)), params(32))
  c.parametrization = "sp"
  c.optimizer.per_layer_lr = False  # plain SP: one global learning rate
  sp = build(c, params(32), params(8))
  u_sp, _ = sp.update(g, sp.init(params(32)), params(32))
  np.testing.assert_allclose(u_mup["hidden"], u_sp["hidden"] / 4, rtol=1e-5)
  np.testing.assert_allclose(u_mup["embed"], u_sp["embed"] / 2, rtol=1e-5)
  c.optimizer.per_layer_lr = True  # SP with Everett et al.'s per-layer rates: hidden 1/m
  sp_layer = build(c, params(32), params(8))
  u_spl, _ = sp_layer.update(g, sp_layer.init(params(32)), params(32))
  np.testing.assert_allclose(u_spl["hidden"], u_sp["hidden"] / 4, rtol=1e-5)
  np.testing.assert_allclose(u_spl["embed"], u_sp["embed"], rtol=1e-5)


def test_weight_decay_skips_vectors_by_default():
  c = config(
    name="adamw", weight_decay=0.5, schedule="constant", warmup_steps=0, grad_clip_norm=0.0
  )
  p = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
  tx = build(c, p)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  assert float(jnp.abs(u["b"]).max()) == 0.0 and float(jnp.abs(u["w"]).max()) > 0
  c.optimizer.decay_vectors = True
  tx = build(c, p)
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
  with pytest.raises(ConfigError) as err:
    build(c, params(8))
  assert str(err.value).startswith(name + " = ")
  assert "must be" in str(err.value) and "\n" not in str(err.value)


def test_unknown_field_and_bad_parametrization():
  c = config()
  c.optimizer.unlock()
  c.optimizer.beta2 = 0.9
  with pytest.raises(ConfigError, match="optimizer.beta2"):
    build(c, params(8))
  c = config()
  c.parametrization = "mu_p"  # (the table's own check: a ValueError naming the argument)
  with pytest.raises(ValueError, match="parametrization = 'mu_p'.*'mup'"):
    build(c, params(8))
  c = config()
  c.alignment = "partial"
  with pytest.raises(ValueError, match="^alignment = 'partial'"):
    build(c, params(8))


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


def test_build_without_an_experiment_config():
  # Only the optimizer section (missing fields take the defaults) and a table, if any.
  p, g = params(16), jax.tree.map(jnp.ones_like, params(16))
  opt = ml_collections.ConfigDict(
    dict(name="adamw", learning_rate=1e-2, schedule="constant", warmup_steps=0, grad_clip_norm=0.0)
  )

  def first_update(table):
    tx = optimizer.build(opt, table, p)
    return tx.update(g, tx.init(p), p)[0]

  plain = first_update(None)
  sp = first_update(
    optim.parametrize(
      base=params(8),
      target=p,
      parametrization="sp",
      optimizer=optimizer.family("adamw"),
      per_layer_lr=False,
    )
  )
  mup = first_update(
    optim.parametrize(
      base=params(8), target=p, parametrization="mup", optimizer=optimizer.family("adamw")
    )
  )
  assert float(jnp.abs(plain["hidden"]).min()) > 0
  jax.tree.map(np.testing.assert_array_equal, plain, sp)
  np.testing.assert_allclose(mup["hidden"], sp["hidden"] / 2, rtol=1e-6)


@pytest.mark.parametrize("name", optimizer.OPTIMIZERS)
@pytest.mark.parametrize("clip", [1.0, None])
def test_injected_hyperparameters_are_hyperparams(name, clip):
  c = config(name=name, clip_threshold=clip)
  state = build(c, params(8)).init(params(8))
  injected = optax.tree_utils.tree_get(state, "InjectStatefulHyperparamsState").hyperparams
  want = {"learning_rate", *optimizer.OPTIMIZERS[name].hyperparams}
  if clip is None and name == "stable_adamw":
    want.remove("clip_threshold")  # clipping off is static
  assert set(injected) == want
  assert set(optimizer.hyperparams(c.optimizer)) == want - (
    {"clip_threshold"} if clip is None else set()
  )


def test_learning_rate_is_found_through_wrappers():
  p = params(8)
  g = jax.tree.map(jnp.ones_like, p)
  inner = optax.inject_hyperparams(optim.stable_adamw)(learning_rate=optim.constant(0.1, 4))
  txs = [
    optax.chain(optax.clip_by_global_norm(1.0), inner),
    optim.skip_spikes(optax.chain(optax.clip_by_global_norm(1.0), inner), 3.0, 4),
    optax.with_extra_args_support(inner),
    build(config(skip_spikes_k=3.0, warmup_steps=4, learning_rate=0.1), p),
  ]
  for tx in txs:
    state = tx.init(p)
    assert float(optim.learning_rate(state)) == 0.0  # the schedule's value at step 0
    for _ in range(2):  # the state holds the learning rate its last update used
      _, state = tx.update(g, state, p, loss=1.0)
    assert float(optim.learning_rate(state)) == pytest.approx(0.025)
  assert optim.learning_rate(optax.adam(1e-3).init(p)) is None
