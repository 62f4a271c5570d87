"""HVPs and power-iteration sharpness against explicitly built Hessians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from adamlab.analysis import hessian


def _quadratic(a):
  a = jnp.asarray(a, jnp.float32)

  def loss(p):
    x = jnp.concatenate([p["u"], p["w"].ravel()])
    return 0.5 * x @ a @ x
  return loss


def _spd(eigs, seed=0):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigs), len(eigs))))
  return q @ np.diag(eigs) @ q.T


PARAMS = dict(u=jnp.zeros(2), w=jnp.zeros((1, 3)))


def test_hvp_of_a_quadratic_is_a_times_v():
  a = _spd([5.0, 3.0, 2.0, 1.0, 0.5])
  v = dict(u=jnp.array([1.0, -2.0]), w=jnp.array([[0.5, 0.0, 3.0]]))
  hv = hessian.hvp(_quadratic(a), PARAMS, v)
  assert jax.tree.structure(hv) == jax.tree.structure(v)
  np.testing.assert_allclose(ravel_pytree(hv)[0], a @ ravel_pytree(v)[0], rtol=1e-5, atol=1e-5)


def test_top_eigenvalue_of_a_quadratic():
  a = _spd([5.0, 3.0, 2.0, 1.0, 0.5])
  lam, used = hessian.top_eigenvalue(_quadratic(a), PARAMS, iters=100, tol=1e-6)
  assert lam == pytest.approx(np.linalg.eigvalsh(a).max(), rel=1e-4)
  assert lam == pytest.approx(5.0, rel=1e-4)
  assert 1 < used < 100  # stopped early


def test_power_iteration_finds_the_largest_magnitude():
  a = np.diag([-4.0, 1.0, 0.5, 0.2, 0.1])
  lam, _ = hessian.top_eigenvalue(_quadratic(a), PARAMS, iters=100, tol=1e-6)
  assert lam == pytest.approx(-4.0, rel=1e-4)


def test_top_eigenvalue_of_a_tiny_mlp():
  k = jax.random.split(jax.random.PRNGKey(0), 5)
  x = jax.random.normal(k[0], (16, 3))
  y = jax.random.normal(k[1], (16, 1))
  params = dict(w1=jax.random.normal(k[2], (3, 4)), b1=jnp.zeros(4),
                w2=jax.random.normal(k[3], (4, 1)) * 0.5)

  def loss(p):
    return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)

  flat, unravel = ravel_pytree(params)
  h = jax.hessian(lambda f: loss(unravel(f)))(flat)
  eigs = np.linalg.eigvalsh(np.asarray(h, np.float64))
  assert eigs[np.argmax(np.abs(eigs))] == eigs.max()  # dominant one is the top one here
  lam, _ = hessian.top_eigenvalue(loss, params, iters=500, tol=1e-7)
  assert lam == pytest.approx(eigs.max(), rel=1e-3)


def test_edge_summary_finds_the_edge_and_the_hovering():
  lr = 0.1  # limit 2 / lr = 20
  out = hessian.edge_summary([0, 10, 20, 30, 40, 50], [5.0, 10.0, 19.0, 21.0, 20.0, 26.0], [lr] * 6)
  assert out["first"] == 20 and out["max_ratio"] == pytest.approx(0.95)
  assert out["after_median"] == pytest.approx(1.025) and out["after_within"] == 0.75
  never = hessian.edge_summary([0, 10], [1.0, 2.0], [lr, lr])
  assert never["first"] is None and never["max_ratio"] == pytest.approx(0.1)
  # A warmup moves the limit: at a small lr the same sharpness is far from it.
  assert hessian.edge_summary([0, 10], [19.0, 19.0], [0.01, 0.1])["first"] == 10
