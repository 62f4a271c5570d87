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


def _tiny_mlp(seed: int):
  """(loss, params, key) of a 3-4-1 tanh MLP on random regression data."""
  k = jax.random.split(jax.random.PRNGKey(seed), 6)
  x = jax.random.normal(k[0], (16, 3))
  y = jax.random.normal(k[1], (16, 1))
  params = dict(
    w1=jax.random.normal(k[2], (3, 4)), b1=jnp.zeros(4), w2=jax.random.normal(k[3], (4, 1)) * 0.5
  )

  def loss(p):
    return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)

  return loss, params, k[4]


def test_top_eigenvalue_of_a_tiny_mlp():
  loss, params, _ = _tiny_mlp(0)
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


def _pre_sharpness_np(h, d):
  """Top eigenvalue of D^-1/2 H D^-1/2, built explicitly (float64)."""
  s = np.diag(1.0 / np.sqrt(np.asarray(d, np.float64)))
  return np.linalg.eigvalsh(s @ np.asarray(h, np.float64) @ s).max()


def _v_hat_diag(nu, count, b2, eps):
  """sqrt(nu / (1 - b2^count)) + eps: Adam's P from the paper, written out in NumPy."""
  return np.sqrt(np.asarray(nu, np.float64) / (1.0 - b2**count)) + eps


def test_preconditioned_sharpness_of_a_quadratic():
  a = _spd([5.0, 3.0, 2.0, 1.0, 0.5], seed=1)
  nu = dict(u=jnp.array([4e-4, 1e-6]), w=jnp.array([[2.5e-5, 9e-4, 1e-4]]))
  count, b2, eps = 7, 0.95, 1e-3
  d = _v_hat_diag(ravel_pytree(nu)[0], count, b2, eps)
  want = _pre_sharpness_np(a, d)
  assert want > 2 * np.linalg.eigvalsh(a).max() / d.max()  # differs from plain H / scale
  lam, _ = hessian.preconditioned_sharpness(
    _quadratic(a), PARAMS, nu, count, b2, eps, iters=500, tol=1e-7
  )
  assert lam == pytest.approx(want, rel=1e-3)
  # The same through the generalised power iteration with an explicit diagonal.
  p = hessian.adam_preconditioner(nu, count, b2, eps)
  np.testing.assert_allclose(ravel_pytree(p)[0], d, rtol=1e-5)
  lam2, _ = hessian.top_eigenvalue(_quadratic(a), PARAMS, iters=500, tol=1e-7, precond=p)
  assert lam2 == pytest.approx(lam, rel=1e-5)


def test_preconditioned_sharpness_when_eps_dominates():
  a = _spd([5.0, 3.0, 2.0, 1.0, 0.5], seed=2)
  zeros = jax.tree.map(jnp.zeros_like, PARAMS)  # v_hat = 0: P = eps, so P^-1 H = H / eps
  for eps in (1e-1, 1e-3):
    lam, _ = hessian.preconditioned_sharpness(
      _quadratic(a), PARAMS, zeros, 3, 0.95, eps, iters=200, tol=1e-7
    )
    assert lam == pytest.approx(5.0 / eps, rel=1e-4)
  # A tiny v_hat next to a large eps is the same as none at all.
  tiny = jax.tree.map(lambda x: jnp.full_like(x, 1e-16), PARAMS)
  lam, _ = hessian.preconditioned_sharpness(
    _quadratic(a), PARAMS, tiny, 3, 0.95, 1e-2, iters=200, tol=1e-7
  )
  assert lam == pytest.approx(500.0, rel=1e-4)


def test_preconditioned_sharpness_of_a_tiny_mlp():
  loss, params, key = _tiny_mlp(1)
  flat, unravel = ravel_pytree(params)
  h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat), np.float64)
  # A second moment spread over two orders of magnitude, as after a few Adam steps.
  nu = unravel(jnp.exp(jax.random.uniform(key, flat.shape, minval=-10.0, maxval=-5.0)))
  count, b2, eps = 20, 0.95, 1e-8
  d = _v_hat_diag(ravel_pytree(nu)[0], count, b2, eps)
  s = np.diag(d**-0.5)
  eigs = np.linalg.eigvalsh(s @ h @ s)
  assert eigs[np.argmax(np.abs(eigs))] == eigs.max()
  lam, _ = hessian.preconditioned_sharpness(loss, params, nu, count, b2, eps, iters=1000, tol=1e-8)
  assert lam == pytest.approx(eigs.max(), rel=1e-3)
  # The spectrum is that of P^-1 H, not H scaled by one number.
  assert eigs.max() == pytest.approx(np.linalg.eigvals(np.diag(1 / d) @ h).real.max(), rel=1e-6)


def test_adam_threshold():
  assert hessian.adam_threshold(1e-3, 0.9) == pytest.approx(38_000.0)
  assert hessian.adam_threshold(0.1) == pytest.approx(380.0)
  assert hessian.adam_threshold(0.1, 0.0) == pytest.approx(2 / 0.1)  # b1 = 0: GD's 2 / lr
  # Stability of frozen-P Adam (EMA momentum) on a 1-D quadratic, simulated: just below
  # the threshold the iterate shrinks, just above it grows.
  lr, b1 = 0.01, 0.9
  for factor, grows in ((0.98, False), (1.02, True)):
    lam, x, m = factor * hessian.adam_threshold(lr, b1), 1.0, 0.0
    for _ in range(500):
      m = b1 * m + (1 - b1) * lam * x
      x = x - lr * m
    assert (abs(x) > 1.0) == grows


def test_stable_eps_bounds_the_preconditioned_sharpness():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(6, 6))
  h = a @ a.T  # positive semi-definite
  lam_h = np.linalg.eigvalsh(h).max()
  lr, b1 = 1e-3, 0.9
  eps = hessian.stable_eps(lam_h, lr, b1)
  assert eps == pytest.approx(lam_h / 38_000.0)

  def ratio(v, eps):  # top eigenvalue of P^-1/2 H P^-1/2 over Adam's limit
    s = 1.0 / np.sqrt(np.sqrt(v) + eps)
    return np.linalg.eigvalsh(s[:, None] * h * s[None, :]).max() / hessian.adam_threshold(lr, b1)

  # v = 0 (the decayed second moment) meets the limit exactly at that eps: the bound is tight.
  assert ratio(np.zeros(6), eps) == pytest.approx(1.0, rel=1e-9)
  assert ratio(np.zeros(6), 1.01 * eps) < 1.0 < ratio(np.zeros(6), 0.99 * eps)
  # Any v >= 0 stays below it at that eps; with a large v a smaller eps is stable too.
  for _ in range(100):
    assert ratio(rng.exponential(size=6) * eps**2, eps) < 1.0
  assert ratio(np.full(6, (10 * eps) ** 2), 0.1 * eps) < 1.0


def test_spike_summary_on_constructed_series():
  steps = [0, 10, 20, 30, 40, 50, 60]
  ratio = [0.5, 0.8, 0.95, 1.2, 0.7, 1.05, 1.3]
  thresholds = [38.0] * 7
  out = hessian.spike_summary(
    steps, np.multiply(ratio, thresholds), thresholds, spikes=[25, 30, 45, 61, 70], tol=0.1
  )
  assert out["first"] == 20 and out["crossings"] == [30, 50]
  assert out["max_ratio"] == pytest.approx(1.3) and out["median_ratio"] == pytest.approx(0.95)
  # Spike at 25 -> measurement 20 (0.95); at 30 -> 30 itself (1.2); 45 -> 40 (0.7); 61, 70 -> 60.
  assert out["before"] == [20, 30, 40, 60, 60]
  np.testing.assert_allclose(out["at_spike"], [0.95, 1.2, 0.7, 1.3, 1.3])
  assert out["at_or_above"] == pytest.approx(4 / 5)
  assert out["measured_fraction"] == pytest.approx(4 / 7)
  # A spike before the first measurement has no ratio and is left out of the fraction.
  early = hessian.spike_summary([10, 20], [1.0, 50.0], [38.0, 38.0], spikes=[5, 20])
  assert early["at_spike"][0] is None and early["before"] == [None, 20]
  assert early["at_or_above"] == 1.0 and early["first"] == 20 and early["crossings"] == [20]
  # Never near the limit, no spikes; a moving limit (per-measurement thresholds).
  none = hessian.spike_summary([0, 10], [1.0, 2.0], [38.0, 38.0], spikes=[])
  assert none["first"] is None and none["at_or_above"] is None and none["crossings"] == []
  moving = hessian.spike_summary([0, 10], [36.0, 36.0], [380.0, 38.0], spikes=[12])
  assert moving["first"] == 10 and moving["at_spike"] == [pytest.approx(36 / 38)]
