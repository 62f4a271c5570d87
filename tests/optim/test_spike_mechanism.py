"""The mechanism behind Adam's loss spikes: a second moment that is out of date.

Wortsman et al. (2023, "Small-scale proxies for large-scale Transformer training
instabilities"; StableAdamW) and Bai et al. (2025, "Adaptive preconditioners trigger
loss spikes in Adam") trace spikes to Adam's second moment v. While a tensor sees only
small gradients, v decays towards their square: after S quiet steps the old v is
weighted by b2^S. When a normal gradient G arrives, v has moved by only (1 - b2) G^2,

    v_T = b2^(S+1) v_0 + b2 (1 - b2^S) rho^2 + (1 - b2) G^2     (quiet gradient rho),

so g^2 / v_hat can reach 1 / (1 - b2), and the update m_hat / sqrt(v_hat) jumps. The
per-tensor RMS_t = sqrt(mean(g^2 / v_hat)) of StableAdamW sees this on the very step
the gradient arrives, while the step itself keeps growing for a few more steps as the
momentum m fills up; dividing the step by max(1, RMS_t) keeps it bounded.

With v_0 = G^2 (a settled Adam, P -> inf) and rho -> 0, 1 / RMS_T^2 = 1 - b2 (1 - b2^S).
Which b2 spikes more therefore depends on S: b2 (1 - b2^S) grows with b2 below
b2* = (S + 1)^(-1/S) and shrinks above it. A short stretch (S = 5, b2* = 0.70) gives a
larger RMS_T for a smaller b2 (v forgets faster); a long one (S = 20000, b2* = 0.9995)
gives a larger RMS_T for a larger b2, up to the cap 1 / (1 - b2).

Gradient schedules are fixed (not a training run), so every quantity has a closed
form; `closed_form` evaluates it per step without any recursion, in float64 but with
the float32-rounded constants the transform actually uses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamlab import optim

B1 = 0.9
P = 100  # Normal-gradient steps first: Adam settles at |update| = 1.
RHO = 1e-3  # Quiet gradients, relative to the normal gradient G = 1.


def f32(x):
  """A Python float as the transform sees it: rounded to float32 on use."""
  return float(np.float32(x))


def closed_form(phases, b1, b2, eps):
  """Adam's moments, bias-corrected update and RMS_t at every step of a 1-D schedule.

  phases: list of (n, g, sign): n steps whose k-th gradient (k = 1..n) is g * sign^k.
  The moments of such a phase are geometric sums,
      m_k = b1^k m_0 + (1 - b1) g sign^k (1 - (sign b1)^k) / (1 - sign b1),
      v_k = b2^k v_0 + (1 - b2) g^2 (1 - b2^k) / (1 - b2).
  The transform multiplies by float32(b2) and float32(1 - b2), which for b2 = 0.999
  are 1.3e-5 (relative) from complementary; the closed form uses the same constants.
  Returns a dict of float64 arrays over t = 1..N: g, m, v, u, rms.
  """
  a1, c1, a2, c2 = f32(b1), f32(1 - b1), f32(b2), f32(1 - b2)
  m0 = v0 = 0.0
  gs, ms, vs = [], [], []
  for n, g, sign in phases:
    k = np.arange(1, n + 1, dtype=np.float64)
    ms.append(a1**k * m0 + c1 * g * sign**k * (1 - (sign * a1) ** k) / (1 - sign * a1))
    vs.append(a2**k * v0 + c2 * g * g * (1 - a2**k) / (1 - a2))
    gs.append(g * sign**k)
    m0, v0 = ms[-1][-1], vs[-1][-1]
  g, m, v = np.concatenate(gs), np.concatenate(ms), np.concatenate(vs)
  t = np.arange(1, len(g) + 1, dtype=np.float64)
  m_hat, v_hat = m / (1 - a1**t), v / (1 - a2**t)
  u = m_hat / (np.sqrt(v_hat) + f32(eps))
  rms = np.abs(g) / np.sqrt(np.maximum(v_hat, f32(eps) ** 2))
  return dict(g=g, m=m, v=v, m_hat=m_hat, v_hat=v_hat, u=u, rms=rms)


def gradients(phases):
  """The schedule of `closed_form`, as float32 gradients."""
  return np.concatenate([g * sign ** np.arange(1, n + 1) for n, g, sign in phases])


def run(tx, grads):
  """Feed a fixed gradient schedule (leading axis = steps) through `tx` in one scan.

  Returns numpy pytrees stacked over steps: updates, RMS_t (from `last_rms`), mu, nu.
  """

  def body(state, g):
    u, state = tx.update(g, state)
    return state, (u, optim.last_rms(state), state.mu, state.nu)

  @jax.jit
  def go(grads):
    state = tx.init(jax.tree.map(lambda g: g[0], grads))
    return jax.lax.scan(body, state, grads)[1]

  grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), grads)
  return jax.tree.map(np.asarray, go(grads))


def tensor_rms(x):
  return np.sqrt(np.mean(np.square(x), axis=-1))


def test_adam_step_jumps_rms_leads_and_stable_adamw_stays_bounded():
  b2, eps, S, K = 0.999, 1e-8, 20000, 60  # S = 20 / (1 - b2): v forgets the old G^2.
  phases = [(P, 1.0, 1), (S, RHO, -1), (K, 1.0, 1)]  # Quiet stretch: alternating signs.
  T = P + S  # 0-based index of the first normal gradient after the stretch.
  ref = closed_form(phases, B1, b2, eps)
  sched = gradients(phases)
  # "quiet": three coordinates of one tensor, the same schedule at three scales (Adam
  # is per-coordinate scale-free); "busy": a tensor with the normal gradient throughout.
  scales = np.array([1.0, 0.5, 2.0])
  grads = {"quiet": sched[:, None] * scales, "busy": np.ones((len(sched), 2))}
  u, rms, _, nu = run(optim.scale_by_stable_adam(B1, b2, eps, clip_threshold=None), grads)
  uq, step = u["quiet"], tensor_rms(u["quiet"])

  # The transform follows the closed form: to 1e-5 from the jump on; over the whole
  # run to 1e-4, as float32 v drifts near its fixed point in the stretch (2e-5 here).
  np.testing.assert_allclose(rms["quiet"], ref["rms"], rtol=1e-4)
  np.testing.assert_allclose(rms["quiet"][T:], ref["rms"][T:], rtol=1e-5)
  np.testing.assert_allclose(uq[:, 0], ref["u"], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(uq[T:], ref["u"][T:, None] * np.ones(3), rtol=1e-5)
  np.testing.assert_allclose(nu["quiet"][T, 0], ref["v"][T], rtol=1e-5)

  # A fresh Adam steps lr-sized: |u| = 1 on step 1 and all through the constant phase
  # (to 6.5e-6, as v_hat = float32(1 - b2) / (1 - float32(b2)) g^2, see `closed_form`).
  np.testing.assert_allclose(uq[:P], 1.0, rtol=2e-5)
  np.testing.assert_allclose(u["busy"], 1.0, rtol=2e-5)
  np.testing.assert_allclose(rms["busy"], 1.0, rtol=2e-5)

  # In the quiet stretch the step is small: alternating +-rho makes
  # m -> (1 - b1) rho / (1 + b1) in size while v -> rho^2, so |u| -> (1 - b1) / (1 + b1).
  quiet_step = (1 - B1) / (1 + B1)
  assert step[P:T].max() <= 1.0
  np.testing.assert_allclose(step[T - 1], quiet_step, rtol=1e-3)

  # The jump. v_T = b2^(S+1) v_0 + b2 (1 - b2^S) rho^2 + (1 - b2): with b2^S = 2e-9
  # this is (1 - b2) + b2 rho^2, so RMS_T^2 = (1 - b2^T) / v_T ~ 1 / (1 - b2) = 999
  # (RMS_T = 31.6, the cap), and m_T ~ (1 - b1) G, so |u_T| ~ (1 - b1) RMS_T = 3.16.
  a2, c2 = f32(b2), f32(1 - b2)  # (c2 / (1 - a2) = 1 in exact arithmetic)
  v_T = a2 ** (S + 1) * ref["v"][P - 1] + a2 * c2 * RHO**2 * (1 - a2**S) / (1 - a2) + c2
  np.testing.assert_allclose(ref["v"][T], v_T, rtol=1e-12)
  rms_cap = 1 / np.sqrt(1 - b2 + b2 * RHO**2)
  np.testing.assert_allclose(rms["quiet"][T], rms_cap, rtol=1e-3)
  np.testing.assert_allclose(step[T], (1 - B1) * rms_cap, rtol=2e-3)
  assert rms["quiet"][T] <= 1 / np.sqrt(1 - b2) * (1 + 1e-6)
  assert step[T] > 3.0  # > 3x a fresh Adam step.
  assert step[T] > 50 * step[T - 1]  # 3.16 / 0.0526 = 60x the quiet step.
  # The step keeps growing while m fills up and v has not caught up:
  # |u_{T+k}| ~ (1 - b1^(k+1)) / sqrt(1 - b2^(k+1)), largest (6.6) at k = 11.
  k = np.arange(K)
  approx = (1 - B1 ** (k + 1)) / np.sqrt(1 - b2 ** (k + 1) + b2 ** (k + 1) * RHO**2)
  np.testing.assert_allclose(step[T:], approx, rtol=2e-3)
  peak = T + int(np.argmax(step))
  assert peak > T and step.max() > 6.0

  # RMS_t crosses 1 first: never above 1 before the jump (the gradient only shrank,
  # so v_hat >= g^2), above 1 on the jump step itself and largest there, while the
  # step peaks later. The first step above 1 is not earlier than the first RMS_t > 1.
  tol = 1e-3
  first_rms = int(np.argmax(rms["quiet"] > 1 + tol))
  first_step = int(np.argmax(step > 1 + tol))
  assert rms["quiet"][:T].max() <= 1 + 1e-5
  assert first_rms == T and first_rms <= first_step
  assert int(np.argmax(rms["quiet"])) == T < peak

  # StableAdamW on the same gradients: the same moments (hence RMS_t); each tensor's
  # step is Adam's divided by max(1, RMS_t); so the quiet tensor is clipped and the
  # busy one (RMS_t = 1) is not. Its update RMS stays <= 1: when RMS_t > 1 it is
  # rms(m_hat / sqrt(v_hat)) / rms(g / sqrt(v_hat)) <= 1 as |m_hat| <= max |g| = |g_t|.
  us, rms_s, _, _ = run(optim.scale_by_stable_adam(B1, b2, eps, clip_threshold=1.0), grads)
  for name in grads:
    np.testing.assert_allclose(rms_s[name], rms[name], rtol=1e-6)
    np.testing.assert_allclose(
      us[name], u[name] / np.maximum(1.0, rms[name])[:, None], rtol=1e-5, atol=1e-9
    )
    assert tensor_rms(us[name]).max() <= 1 + 1e-5
  np.testing.assert_allclose(tensor_rms(us["quiet"])[T], (1 - B1), rtol=2e-3)
  np.testing.assert_allclose(us["busy"], u["busy"], rtol=2e-5)  # RMS_t = 1 +- 2e-5 (float32)


@pytest.mark.parametrize("sign", [1, -1], ids=["constant", "alternating"])
def test_jump_size_follows_the_closed_form_in_b2(sign):
  eps, K = 1e-8, 3
  got = {}
  for b2 in (0.95, 0.99, 0.999):
    tx = optim.scale_by_stable_adam(B1, b2, eps, clip_threshold=None)
    for S in (5, 20000):
      phases = [(P, 1.0, 1), (S, RHO, sign), (K, 1.0, 1)]
      T = P + S
      ref = closed_form(phases, B1, b2, eps)
      u, rms, mu, nu = run(tx, gradients(phases)[:, None])
      # Transform and closed form agree on the jump step: moments, update, RMS_t.
      np.testing.assert_allclose(nu[T, 0], ref["v"][T], rtol=1e-5)
      np.testing.assert_allclose(mu[T, 0], ref["m"][T], rtol=1e-5)
      np.testing.assert_allclose(u[T, 0], ref["u"][T], rtol=1e-5)
      np.testing.assert_allclose(rms[T], ref["rms"][T], rtol=1e-5)
      # v_T decomposes as in the module docstring (old v decayed by b2^(S+1)).
      a2, c2 = f32(b2), f32(1 - b2)
      quiet = c2 * RHO**2 * (1 - a2**S) / (1 - a2)
      np.testing.assert_allclose(
        ref["v"][T], a2 ** (S + 1) * ref["v"][P - 1] + a2 * quiet + c2, rtol=1e-12
      )
      # g^2 / v_hat never exceeds 1 / (1 - b2): v_T holds (1 - b2) g_T^2 itself.
      assert rms[T] ** 2 <= (1 - a2 ** (T + 1)) / c2 * (1 + 1e-5)
      got[b2, S] = float(rms[T])
      # The settled-Adam limit of the docstring, 1 / RMS_T^2 = 1 - b2 (1 - b2^S), where
      # P = 100 steps have settled v (b2^P < 1%: b2 = 0.95); rho^2 adds ~1e-6.
      if b2**P < 0.01:
        np.testing.assert_allclose(1 / rms[T] ** 2, 1 - b2 * (1 - b2**S), rtol=0.01)
  # The derived directions (b2* = (S + 1)^(-1/S)): short stretch, all b2 > b2* = 0.70:
  # smaller b2 spikes more; long stretch, all b2 < b2* = 0.9995: larger b2 spikes more.
  assert got[0.95, 5] > got[0.99, 5] > got[0.999, 5] > 1
  assert got[0.999, 20000] > got[0.99, 20000] > got[0.95, 20000] > 1
  np.testing.assert_allclose(
    [got[b, 20000] for b in (0.95, 0.99, 0.999)],
    [1 / np.sqrt(1 - b + b * RHO**2) for b in (0.95, 0.99, 0.999)],
    rtol=1e-3,
  )


@pytest.mark.parametrize("b2", [0.95, 0.99, 0.999])
def test_zero_gradient_stretch_decays_v_geometrically_and_eps_bounds_the_step(b2):
  # Exact zeros: v_{P+k} = b2^k v_P and m_{P+k} = b1^k m_P, RMS_t = 0 (0/0-free), and
  # once sqrt(v_hat) < eps (b2 = 0.95 after ~540 steps) eps, not v, bounds the step:
  # |u| <= |m_hat| / eps. S = 600 keeps b1^S m_P (2e-28) a normal float32.
  eps, S, K = 1e-6, 600, 3
  phases = [(P, 1.0, 1), (S, 0.0, 1), (K, 1.0, 1)]
  T = P + S
  ref = closed_form(phases, B1, b2, eps)
  u, rms, mu, nu = run(
    optim.scale_by_stable_adam(B1, b2, eps, clip_threshold=None), gradients(phases)[:, None]
  )
  u, mu, nu = u[:, 0], mu[:, 0], nu[:, 0]
  k = np.arange(1, S + 1)
  np.testing.assert_allclose(nu[P:T], f32(b2) ** k * nu[P - 1], rtol=1e-5)
  np.testing.assert_allclose(mu[P:T], f32(B1) ** k * mu[P - 1], rtol=1e-5)
  np.testing.assert_allclose(nu[P:T], ref["v"][P:T], rtol=1e-5)
  np.testing.assert_array_equal(rms[P:T], 0.0)
  np.testing.assert_allclose(u, ref["u"], rtol=1e-5)
  assert np.all(np.isfinite(u)) and np.all(np.abs(u[P:T]) <= 1)
  bound = np.abs(ref["m_hat"]) / f32(eps)
  assert np.all(np.abs(u) <= bound * (1 + 1e-5))
  eps_regime = np.sqrt(ref["v_hat"][P:T]) < eps
  if b2 == 0.95:
    assert eps_regime.sum() > 50
    np.testing.assert_allclose(np.abs(u[P:T][eps_regime]), bound[P:T][eps_regime], rtol=0.5)
  # The jump after silence: v_T = b2^(S+1) v_P + (1 - b2) G^2 exactly (no quiet term).
  v_T = f32(b2) ** (S + 1) * ref["v"][P - 1] + f32(1 - b2)
  np.testing.assert_allclose(nu[T], v_T, rtol=1e-5)
  np.testing.assert_allclose(rms[T], ref["rms"][T], rtol=1e-5)
  assert rms[T] ** 2 <= 1 / (1 - b2) * (1 + 1e-5)


@pytest.mark.parametrize("eps", [1e-8, 1e-6])
def test_small_gradient_stretch_eps_caps_the_step(eps):
  """A tiny but steady gradient rho after normal ones: v decays towards rho^2, so
  with eps << rho Adam's step climbs back to lr size (|u| -> rho / rho = 1) although
  the gradient is 1e7 times smaller; with eps >> rho the step stays at about
  rho / eps. This is the cap that removed the full-batch loss spikes at eps 1e-6 in
  experiments/loss_spikes (the memorized loss's gradients are this small).

  |u| = m_hat / (sqrt(v_hat) + eps) <= m_hat / eps at every step; the step after the
  stretch, and the whole stretch, against the closed form in float32 (rtol 1e-5)."""
  rho, S = 1e-7, 2000  # b2 0.95: b2^S v_P = 1e-45 of G^2, far below rho^2 = 1e-14
  phases = [(P, 1.0, 1), (S, rho, 1)]
  ref = closed_form(phases, B1, 0.95, eps)
  u = run(
    optim.scale_by_stable_adam(B1, 0.95, eps, clip_threshold=None), gradients(phases)[:, None]
  )[0][:, 0]
  np.testing.assert_allclose(u, ref["u"], rtol=1e-5)
  # By the last 100 steps v_hat = rho^2 and m_hat = rho up to b2^1900 and b1^1900
  # (< 1e-40), so the step is rho / (rho + eps); float32 rounding of the recursions
  # (~1e-6 relative) is all that is left, well inside 1e-4.
  settled = np.abs(u[-100:])
  np.testing.assert_allclose(settled, rho / (rho + f32(eps)), rtol=1e-4)
  if eps < rho:
    assert settled.min() > 0.9  # an lr-sized step on a 1e-7 gradient
  else:
    assert settled.max() < 0.1 and np.all(
      np.abs(u[P:]) <= np.abs(ref["m_hat"][P:]) / f32(eps) * (1 + 1e-5)
    )
