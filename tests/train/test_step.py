"""The train step's non-finite guard, on a tiny objective: one bad element is enough."""

import jax
import jax.numpy as jnp
import numpy as np

from adamlab import optim
from adamlab.train.step import initial_state, make_train_step


def objective(p, inputs, targets, rng=None, key=None):
  # sqrt(|b|) has a non-finite derivative where b = 0, while the loss stays finite.
  loss = jnp.sum(p["a"] * inputs) + jnp.sum(jnp.sqrt(jnp.abs(p["b"])))
  return loss, {"accuracy": jnp.zeros([])}


def state_for(params, tx):
  return initial_state(params, tx.init(params), jax.random.key_data(jax.random.PRNGKey(0)))


def test_one_non_finite_gradient_element_skips_the_whole_update():
  tx = optim.stable_adamw(0.1)
  step = jax.jit(make_train_step(objective, tx, max_nonfinite=2))
  x = jnp.ones(3)
  good = {"a": jnp.arange(3.0), "b": jnp.array([[1.0, 4.0], [9.0, 16.0]])}
  bad = {"a": jnp.arange(3.0), "b": jnp.array([[1.0, 0.0], [9.0, 16.0]])}  # one zero

  new, m = step(state_for(good, tx), x, None)
  assert not m["skipped"] and int(new["nonfinite"]) == 0
  assert not np.allclose(new["params"]["a"], good["a"])  # the update was applied

  s = state_for(bad, tx)
  new, m = step(s, x, None)
  assert np.isfinite(m["loss"]) and not np.isfinite(m["grad_norm"])
  assert m["skipped"] and int(new["nonfinite"]) == 1 and int(new["step"]) == 1
  for got, want in zip(
    jax.tree.leaves(new["params"]) + jax.tree.leaves(new["opt_state"]),
    jax.tree.leaves(s["params"]) + jax.tree.leaves(s["opt_state"]),
  ):
    np.testing.assert_array_equal(got, want)  # params and optimizer state untouched
  new, _ = step(new, x, None)
  assert int(new["nonfinite"]) == 2 and bool(new["streak_hit"])  # max_nonfinite reached
