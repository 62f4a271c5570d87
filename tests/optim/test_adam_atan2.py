import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim
from adamlab.optim import _atan2
from tests.optim import reference


def test_atan2_matches_numpy_including_edges():
  rng = np.random.default_rng(0)
  y = rng.standard_normal(100_000).astype(np.float32) * 10.0 ** rng.uniform(-20, 20, 100_000)
  x = np.abs(rng.standard_normal(100_000)).astype(np.float32) * 10.0 ** rng.uniform(
    -20, 20, 100_000
  )
  y, x = y.astype(np.float32), x.astype(np.float32)
  got = np.asarray(_atan2.atan2(jnp.asarray(y), jnp.asarray(x)), np.float64)
  np.testing.assert_allclose(got, np.arctan2(y.astype(np.float64), x.astype(np.float64)), atol=3e-7)
  edges_y = np.array([0.0, 1.0, -1.0, 0.0, 3.0, -2.0, 1e-30, 5.0], np.float32)
  edges_x = np.array([0.0, 0.0, 0.0, 1.0, 3.0, 2.0, 0.0, np.inf], np.float32)
  np.testing.assert_allclose(
    _atan2.atan2(jnp.asarray(edges_y), jnp.asarray(edges_x)),
    np.arctan2(edges_y, edges_x),
    atol=3e-7,
  )


def test_matches_reference_step_by_step():
  rng = np.random.default_rng(1)
  grads = [
    rng.standard_normal((6, 4)).astype(np.float32) * (10.0 if t == 3 else 1.0) for t in range(10)
  ]
  theta0 = rng.standard_normal((6, 4)).astype(np.float32)
  want = reference.adam_atan2(grads, theta0, [0.05] * 10, 0.9, 0.99, 1.27, 1.0, 0.1)
  _check_steps(optim.adam_atan2(0.05, b2=0.99, weight_decay=0.1), theta0, grads, want)


def _check_steps(tx, theta0, grads, want):
  params = jnp.asarray(theta0)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for t, g in enumerate(grads):
    u, state = step(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, u)
    # float32 against the float64 reference over 10 steps: a few float32 roundings per
    # step, compounding; a wrong formula is off by > 1e-3.
    np.testing.assert_allclose(params, want[t], rtol=1e-5, atol=1e-6, err_msg=f"step {t}")


def test_nesterov_matches_reference_step_by_step():
  rng = np.random.default_rng(6)
  grads = [rng.standard_normal((6, 4)).astype(np.float32) + 0.5 for t in range(10)]
  theta0 = rng.standard_normal((6, 4)).astype(np.float32)
  args = (grads, theta0, [0.05] * 10, 0.9, 0.99, 1.27, 1.0, 0.1)
  want, plain = reference.adam_atan2(*args, nesterov=True), reference.adam_atan2(*args)
  assert np.abs(want[-1] - plain[-1]).max() > 1e-3  # the look-ahead moves the params
  tx = optim.adam_atan2(0.05, 0.9, 0.99, weight_decay=0.1, nesterov=True, mu_dtype=jnp.float32)
  _check_steps(tx, theta0, grads, want)


def test_an_optax_style_positional_eps_is_refused():
  # optax.adamw's fourth argument is eps; Adam-atan2 has none, so `a` is keyword-only
  # and a positional eps cannot silently become a = 1e-8.
  with pytest.raises(TypeError):
    optim.adam_atan2(1e-3, 0.9, 0.999, 1e-8)
  with pytest.raises(TypeError):
    optim.scale_by_adam_atan2(0.9, 0.999, 1e-8)


@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1e6, 1e12])
def test_invariant_to_gradient_scale(scale):
  rng = np.random.default_rng(2)
  grads = [rng.standard_normal((8, 8)).astype(np.float32) for _ in range(5)]
  tx = optim.scale_by_adam_atan2()

  def updates(gs):
    state = tx.init(jnp.zeros((8, 8)))
    outs = []
    for g in gs:
      u, state = tx.update(jnp.asarray(g), state)
      outs.append(u)
    return outs

  base = updates(grads)
  scaled = updates([g * np.float32(scale) for g in grads])
  for a, b in zip(base, scaled):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Adam with its eps is not: at tiny gradients eps dominates and the step collapses.
  adam = optax.scale_by_adam(eps=1e-8)
  u_small, _ = adam.update(jnp.asarray(grads[0]) * 1e-12, adam.init(jnp.zeros((8, 8))))
  assert float(jnp.max(jnp.abs(u_small))) < 1e-3


def test_zero_gradients_and_underflowed_second_moment():
  tx = optim.scale_by_adam_atan2()
  u, s = tx.update(jnp.zeros((3,)), tx.init(jnp.zeros((3,))))
  np.testing.assert_array_equal(u, 0.0)
  # g^2 underflows to 0 in float32 while g does not: the step stays bounded, a * pi/2.
  u, _ = tx.update(jnp.full((3,), 1e-30, jnp.float32), s)
  assert bool(jnp.all(jnp.isfinite(u)))
  assert float(jnp.max(jnp.abs(u))) <= 1.27 * np.pi / 2 + 1e-6


def test_bf16_keeps_dtype_and_inject_hyperparams():
  tx = optax.inject_hyperparams(optim.adam_atan2)(learning_rate=1e-2, b2=0.95, a=1.0)
  params = jnp.ones((4, 4), jnp.bfloat16)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(3):
    u, state = step(jnp.full((4, 4), 0.3, jnp.bfloat16), state, params)
    params = optax.apply_updates(params, u)
  assert u.dtype == jnp.bfloat16 and params.dtype == jnp.bfloat16
  assert state.inner_state[0].mu.dtype == jnp.bfloat16
  # constant gradient: m_hat = sqrt(v_hat) = g, so each step is lr * a * atan(1).
  np.testing.assert_allclose(np.asarray(params, np.float32), 1 - 3 * 1e-2 * np.pi / 4, atol=1e-2)


def test_atan2_of_square_matches_numpy():
  rng = np.random.default_rng(5)
  y = (rng.standard_normal(50_000) * 10.0 ** rng.uniform(-15, 15, 50_000)).astype(np.float32)
  x = (np.abs(rng.standard_normal(50_000)) * 10.0 ** rng.uniform(-15, 15, 50_000)).astype(
    np.float32
  )
  got = _atan2.atan2_of_square(jnp.asarray(y), jnp.asarray(x) ** 2)
  np.testing.assert_allclose(got, np.arctan2(y.astype(np.float64), x.astype(np.float64)), atol=5e-7)
  np.testing.assert_array_equal(_atan2.atan2_of_square(jnp.zeros(2), jnp.array([0.0, 1.0])), 0.0)
