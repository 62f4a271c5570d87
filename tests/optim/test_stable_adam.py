import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim
from tests.optim import reference


def spiky_grads(steps, shape, seed=0, spike_at=(6,), spike=50.0):
  """Small gradients with a few large ones: u_t lags behind, RMS_t > 1, clipping acts."""
  rng = np.random.default_rng(seed)
  grads = [0.01 * rng.standard_normal(shape).astype(np.float32) for _ in range(steps)]
  for t in spike_at:
    grads[t] = spike * grads[t]
  return grads


def run(tx, params, grads):
  state = tx.init(params)
  step = jax.jit(lambda g, s, p: tx.update(g, s, p))
  out = []
  for g in grads:
    updates, state = step(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append((params, state))
  return out


@pytest.mark.parametrize("clip", [1.0, 0.5, None])
def test_matches_algorithm_2_step_by_step(clip):
  grads = spiky_grads(12, (7, 5), spike_at=(4, 9))
  theta0 = np.random.default_rng(1).standard_normal((7, 5)).astype(np.float32)
  lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-6, 0.1
  want, want_rms = reference.stable_adamw(grads, theta0, [lr] * 12, b1, b2, eps, wd, clip)
  tx = optim.stable_adamw(lr, b1, b2, eps, weight_decay=wd, clip_threshold=clip)
  got = run(tx, jnp.asarray(theta0), [jnp.asarray(g) for g in grads])
  for t, (params, state) in enumerate(got):
    np.testing.assert_allclose(params, want[t], rtol=2e-5, atol=1e-6, err_msg=f"step {t}")
    np.testing.assert_allclose(optim.last_rms(state), want_rms[t], rtol=1e-5)
  # The spikes really drove RMS_t above the threshold, so clipping was exercised.
  assert max(want_rms) > 2.0


def test_eps_floor_of_rms_with_tiny_and_zero_gradients():
  # g ~ 1e-7 < eps: max(u_t, eps^2) takes eps^2 at most steps, which the stored-moment
  # form must reproduce (a floor of eps^2 on the undebiased nu would be c times off);
  # a row of zero gradients must stay 0/0-free.
  grads = [1e-5 * g for g in spiky_grads(10, (6, 4), spike_at=(3, 7))]
  for g in grads:
    g[0] = 0.0
  theta0 = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
  want, want_rms = reference.stable_adamw(grads, theta0, [0.1] * 10, 0.9, 0.99, 1e-6, 0.0, 1.0)
  tx = optim.stable_adamw(0.1, 0.9, 0.99, 1e-6, weight_decay=0.0, clip_threshold=1.0)
  got = run(tx, jnp.asarray(theta0), [jnp.asarray(g) for g in grads])
  for t, (params, state) in enumerate(got):
    np.testing.assert_allclose(params, want[t], rtol=2e-5, atol=1e-6, err_msg=f"step {t}")
    np.testing.assert_allclose(optim.last_rms(state), want_rms[t], rtol=1e-5, err_msg=f"step {t}")
  assert min(want_rms) < 0.5 and max(want_rms) > 1.0  # the floor acts, and so does clipping


def test_clipping_changes_the_step_and_decay_uses_unclipped_lr():
  grads = spiky_grads(6, (4, 4), spike_at=(5,), spike=1000.0)
  theta0 = np.ones((4, 4), np.float32)
  ref_clip, rms = reference.stable_adamw(grads, theta0, [0.1] * 6, 0.9, 0.99, 1e-6, 0.5, 1.0)
  ref_noclip, _ = reference.stable_adamw(grads, theta0, [0.1] * 6, 0.9, 0.99, 1e-6, 0.5, None)
  assert rms[-1] > 2
  assert not np.allclose(ref_clip[-1], ref_noclip[-1])
  got = run(
    optim.stable_adamw(0.1, 0.9, 0.99, 1e-6, weight_decay=0.5, clip_threshold=1.0),
    jnp.asarray(theta0),
    [jnp.asarray(g) for g in grads],
  )
  np.testing.assert_allclose(got[-1][0], ref_clip[-1], rtol=2e-5)
  # Decay with the unclipped lr: with zero Adam direction the step is exactly lr * wd * theta.
  tx = optim.stable_adamw(0.1, weight_decay=0.5)
  upd, _ = tx.update(jnp.zeros((4, 4)), tx.init(jnp.asarray(theta0)), jnp.asarray(theta0))
  np.testing.assert_allclose(upd, -0.1 * 0.5 * theta0, rtol=1e-6)


def test_no_clipping_is_optax_adamw():
  rng = np.random.default_rng(3)
  params = {
    "w": jnp.asarray(rng.standard_normal((6, 3)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal((3,)), jnp.float32),
  }
  mask = {"w": True, "b": False}
  grads = [
    jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
    for _ in range(10)
  ]
  sched = optax.linear_schedule(0.0, 1e-2, 5)
  ours = run(
    optim.stable_adamw(sched, 0.8, 0.95, 1e-7, weight_decay=0.1, clip_threshold=None, mask=mask),
    params,
    grads,
  )
  theirs = run(optax.adamw(sched, 0.8, 0.95, 1e-7, weight_decay=0.1, mask=mask), params, grads)
  for (p1, _), (p2, _) in zip(ours, theirs):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), p1, p2)


@pytest.mark.parametrize("clip", [1.0, None])
@pytest.mark.parametrize("eps_root,nesterov", [(1e-5, False), (0.0, True), (1e-5, True)])
def test_eps_root_and_nesterov_match_algorithm_2(clip, eps_root, nesterov):
  grads = spiky_grads(12, (7, 5), spike_at=(4, 9))
  theta0 = np.random.default_rng(1).standard_normal((7, 5)).astype(np.float32)
  lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-6, 0.1
  args = (grads, theta0, [lr] * 12, b1, b2, eps, wd, clip)
  want, want_rms = reference.stable_adamw(*args, eps_root, nesterov)
  plain, _ = reference.stable_adamw(*args)
  # eps_root (u_t ~ 1e-4 here) and the look-ahead both move the params.
  assert np.abs(want[-1] - plain[-1]).max() > 1e-3
  tx = optim.stable_adamw(
    lr, b1, b2, eps, eps_root, weight_decay=wd, nesterov=nesterov, clip_threshold=clip
  )
  got = run(tx, jnp.asarray(theta0), [jnp.asarray(g) for g in grads])
  for t, (params, state) in enumerate(got):
    # float32 against float64, 12 steps: as test_matches_algorithm_2_step_by_step.
    np.testing.assert_allclose(params, want[t], rtol=2e-5, atol=1e-6, err_msg=f"step {t}")
    np.testing.assert_allclose(optim.last_rms(state), want_rms[t], rtol=1e-5)


@pytest.mark.parametrize("mu_dtype", [None, jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("eps_root", [0.0, 1e-6])
@pytest.mark.parametrize("alias", ["stable_adamw", "adamw"])
def test_no_clipping_is_optax_adamw_bit_for_bit(alias, eps_root, nesterov, mu_dtype):
  rng = np.random.default_rng(4)
  params = {
    "w": jnp.asarray(rng.standard_normal((6, 3)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal((3,)), jnp.float32),
  }
  grads = [
    jax.tree.map(lambda p: jnp.asarray(1e-2 * rng.standard_normal(p.shape), jnp.float32), params)
    for _ in range(6)
  ]
  sched, mask = optax.linear_schedule(0.0, 1e-2, 3), {"w": True, "b": False}
  args = (sched, 0.8, 0.95, 1e-7, eps_root, mu_dtype, 0.1, mask)  # optax.adamw's order
  extra = {"clip_threshold": None} if alias == "stable_adamw" else {}
  ours = run(getattr(optim, alias)(*args, nesterov=nesterov, **extra), params, grads)
  theirs = run(optax.adamw(*args, nesterov=nesterov), params, grads)
  for (p1, s1), (p2, s2) in zip(ours, theirs):
    jax.tree.map(np.testing.assert_array_equal, p1, p2)  # the same operations in order
    (mine,) = optim.states_of(s1, optim.ScaleByStableAdamState)
    (adam,) = optim.states_of(s2, optax.ScaleByAdamState)
    jax.tree.map(np.testing.assert_array_equal, (mine.mu, mine.nu), (adam.mu, adam.nu))
    assert mine.mu["w"].dtype == adam.mu["w"].dtype == jnp.dtype(mu_dtype or jnp.float32)


def test_zero_gradients_are_finite_and_do_nothing():
  tx = optim.stable_adamw(1e-2, eps=1e-8, weight_decay=0.0)
  params = jnp.ones((3, 3))
  out = run(tx, params, [jnp.zeros((3, 3))] * 3)
  params, state = out[-1]
  np.testing.assert_array_equal(params, jnp.ones((3, 3)))
  assert float(optim.last_rms(state)) == 0.0


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_params_keep_dtype_and_track_reference(dtype):
  grads = spiky_grads(8, (16, 8), spike_at=(5,))
  theta0 = np.random.default_rng(2).standard_normal((16, 8)).astype(np.float32)
  tx = optim.stable_adamw(1e-2, 0.9, 0.99, 1e-6, weight_decay=0.1)
  params = jnp.asarray(theta0, dtype)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for g in grads:
    updates, state = step(jnp.asarray(g, dtype), state, params)
    adam_state = state[0]
    assert updates.dtype == dtype and adam_state.mu.dtype == dtype
    assert adam_state.nu.dtype == dtype
    params = optax.apply_updates(params, updates)
    assert params.dtype == dtype
  want, _ = reference.stable_adamw(
    [np.asarray(jnp.asarray(g, dtype), np.float64) for g in grads],
    np.asarray(jnp.asarray(theta0, dtype), np.float64),
    [1e-2] * 8,
    0.9,
    0.99,
    1e-6,
    0.1,
    1.0,
  )
  # The moments are stored in low precision, so allow a few ulps of drift per step.
  np.testing.assert_allclose(np.asarray(params, np.float64), want[-1], atol=0.05)
  assert bool(jnp.all(jnp.isfinite(params)))


def test_last_rms_through_wrappers_and_inject_hyperparams():
  params = {"a": jnp.ones((4, 4)), "b": jnp.ones((4,))}
  grads = {"a": jnp.full((4, 4), 0.5), "b": jnp.full((4,), -1.0)}
  txs = [
    optim.stable_adamw(1e-3),
    optax.chain(optax.clip_by_global_norm(1.0), optim.stable_adamw(1e-3)),
    optax.MultiSteps(optim.stable_adamw(1e-3), every_k_schedule=2),
    optax.inject_hyperparams(optim.stable_adamw)(learning_rate=1e-3, b2=0.95),
    optax.masked(optim.stable_adamw(1e-3), {"a": True, "b": False}),
  ]
  for tx in txs:
    state = tx.init(params)
    for _ in range(2):  # MultiSteps applies the inner optimizer every second call.
      _, state = tx.update(grads, state, params)
    rms = optim.last_rms(state)
    # Constant gradients: bias-corrected u_t = g^2, so RMS_t = 1 up to rounding. u_t's
    # (1 - b2) is rounded from float64 but its debias 1 - b2^t is computed in float32
    # (as in optax): at b2 = 0.999, t <= 2, they differ by < 4e-5 relative, RMS_t by
    # half that.
    np.testing.assert_allclose(rms["a"], 1.0, rtol=2e-5)
  with pytest.raises(ValueError):
    optim.last_rms(optax.adam(1e-3).init(params))


def test_jit_vmap_and_no_recompilation():
  traces = []
  tx = optax.inject_hyperparams(optim.stable_adamw)(learning_rate=1e-2, b2=0.99)

  @jax.jit
  def step(g, s, p):
    traces.append(1)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  p = jnp.ones((5, 5))
  s = tx.init(p)
  for _ in range(3):
    p, s = step(jnp.full((5, 5), 0.1), s, p)
  s.hyperparams["b2"] = jnp.asarray(0.9, jnp.float32)  # a new value, same shapes: no new trace.
  p, s = step(jnp.full((5, 5), 0.1), s, p)
  assert len(traces) == 1
  assert s.count.dtype == jnp.int32

  # vmap over a batch of runs with different b2.
  def one(b2, g):
    t = optax.inject_hyperparams(optim.stable_adamw)(learning_rate=1e-2, b2=b2, weight_decay=0.0)
    st = t.init(jnp.ones(3))
    u, _ = t.update(g, st, jnp.ones(3))
    return u

  b2s = jnp.array([0.9, 0.99])
  gs = jnp.stack([jnp.ones(3), -jnp.ones(3)])
  out = jax.vmap(one)(b2s, gs)
  np.testing.assert_allclose(out[0], -1e-2 * np.ones(3), rtol=1e-5)
  np.testing.assert_allclose(out[1], 1e-2 * np.ones(3), rtol=1e-5)


def test_tuple_params_and_none_free_pytrees():
  params = (jnp.ones(2), jnp.ones((2, 2)), jnp.ones(3), jnp.ones(1))  # a 4-tuple of leaves
  tx = optim.stable_adamw(1e-2)
  u, s = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  assert jax.tree.structure(u) == jax.tree.structure(params)
  assert [x.shape for x in u] == [(2,), (2, 2), (3,), (1,)]
