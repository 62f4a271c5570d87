"""init_params and apply_multipliers against the convention they document, written out
in NumPy: matrices N(0, init_std^2), vectors v / multiplier, effective = multiplier * stored."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamlab import optim


def model(n):
  return {
    "embed": jnp.zeros((32, n)),
    "hidden": jnp.zeros((n, n)),
    "readout": jnp.zeros((n, 8)),
    "bias": jnp.zeros((n,)),
    "gain": jnp.ones((n,)),
    "readout_bias": jnp.zeros((8,)),
  }


@pytest.mark.parametrize("parametrization", optim.PARAMETRIZATIONS)
def test_init_params_follows_the_table(parametrization):
  table = optim.parametrize(base=model(64), target=model(512), parametrization=parametrization)
  params = optim.init_params(table, model(512), jax.random.PRNGKey(0))
  stds, mults = optim.init_stds(table), optim.forward_multipliers(table)
  for name in ("embed", "hidden", "readout"):
    x = np.asarray(params[name], np.float64)
    # >= 4096 draws: the sample std is within 3% of sigma with probability 1 - 1e-8
    # (its relative error is about 1 / sqrt(2 n) <= 1.1%), and the mean within 5 sigma/sqrt(n).
    assert x.std() == pytest.approx(stds[name], rel=0.03), name
    assert abs(x.mean()) < 5 * stds[name] / np.sqrt(x.size), name
  for name, v in (("bias", 0.0), ("gain", 1.0), ("readout_bias", 0.0)):
    # Vectors keep the model's value as their effective value: stored v / multiplier.
    np.testing.assert_array_equal(params[name], np.float32(v / mults[name]))
    # v / m, then times m, in float32: two roundings of half an ulp each.
    np.testing.assert_allclose(optim.apply_multipliers(table, params)[name], v, rtol=2**-23)


def test_init_params_is_deterministic_and_draws_each_leaf_apart():
  table = optim.parametrize(base=model(16), target=model(64))
  a = optim.init_params(table, model(64), jax.random.PRNGKey(3))
  b = optim.init_params(table, model(64), jax.random.PRNGKey(3))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  c = optim.init_params(table, model(64), jax.random.PRNGKey(4))
  assert not np.array_equal(a["hidden"], c["hidden"])
  # Leaves of one shape draw from their own keys: not the same numbers scaled.
  square = {"w1": jnp.zeros((64, 64)), "w2": jnp.zeros((64, 64))}
  d = optim.init_params(optim.parametrize(base=None, target=square), square, jax.random.PRNGKey(3))
  assert abs(np.corrcoef(np.ravel(d["w1"]), np.ravel(d["w2"]))[0, 1]) < 0.05  # 3 sigma


def test_init_keeps_dtypes():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), model(64))
  table = optim.parametrize(base=model(16), target=params)
  out = optim.init_params(table, params, jax.random.PRNGKey(0))
  assert {x.dtype for x in jax.tree.leaves(out)} == {jnp.dtype(jnp.bfloat16)}


def test_apply_multipliers_is_multiplier_times_stored_and_passes_gradients():
  table = optim.parametrize(base=model(16), target=model(64), parametrization="mup")
  params = optim.init_params(table, model(64), jax.random.PRNGKey(0))
  mults = optim.forward_multipliers(table)
  eff = optim.apply_multipliers(table, params)
  for name in params:
    np.testing.assert_array_equal(eff[name], np.asarray(params[name]) * np.float32(mults[name]))
  # d(sum of effective params)/d(stored) = multiplier, through jit.
  grads = jax.jit(
    jax.grad(lambda p: sum(x.sum() for x in jax.tree.leaves(optim.apply_multipliers(table, p))))
  )(params)
  for name in params:
    np.testing.assert_array_equal(grads[name], np.full(params[name].shape, mults[name], np.float32))
