"""StableAdamW: AdamW with per-tensor update clipping (Wortsman et al., Algorithm 2).

Adam's second moment u_t can fall behind the gradients it is meant to track; then
g_t^2 / u_t is large and the update is too big. Algorithm 2 measures this per tensor,

    RMS_t = sqrt(mean(g_t^2 / u_t)),

and divides that tensor's step size by max(1, RMS_t / clip_threshold). The debiased
betas of Algorithm 2 give exactly Adam's bias-corrected moments, so they are computed
that way. RMS_t of the last step stays in the state (also with clipping off), which is
how RMS spikes are observed; read it with `last_rms`.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from adamlab.optim.parametrization import eps_multipliers, with_learning_rate
from adamlab.optim.state import states_of


class ScaleByStableAdamState(NamedTuple):
  count: jax.Array  # int32 step counter, t - 1 before the update.
  mu: optax.Updates  # First moment v_t (Algorithm 2 calls it v).
  nu: optax.Updates  # Second moment u_t.
  rms: Any  # Per-tensor RMS_t of the last step, float32 scalars (or None leaves).


def compute_dtype(dtype) -> jnp.dtype:
  """Low-precision states are computed in float32 and stored back in their dtype."""
  return jnp.promote_types(dtype, jnp.float32)


def unzip(out, like, n: int):
  """A tree of n-tuples (one per leaf of `like`) -> n trees."""
  return jax.tree.transpose(jax.tree.structure(like), jax.tree.structure((0,) * n), out)


def leaf_eps(eps, eps_scale, tree):
  """eps per leaf: a scalar eps times an optional static per-leaf multiplier tree."""
  if eps_scale is None:
    return jax.tree.map(lambda _: eps, tree)
  return jax.tree.map(lambda _, s: eps * s, tree, eps_scale)


def scale_by_stable_adam(
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-6,
    clip_threshold: Optional[float] = 1.0,
    *,
    eps_scale: Any = None,
    mu_dtype: Any = None,
    track_rms: bool = True,
) -> optax.GradientTransformation:
  """Adam's direction with per-tensor update clipping (StableAdamW, Algorithm 2).

  Args:
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: added to sqrt(u_t) in the denominator.
    clip_threshold: a tensor's step is divided by max(1, RMS_t / clip_threshold);
      None turns clipping off, which is then exactly `optax.scale_by_adam`.
    eps_scale: optional pytree (like params) of Python floats multiplying eps per
      leaf; width parametrizations use it (epsilon must shrink with width).
    mu_dtype: dtype of the first moment; None keeps the params' dtype.
    track_rms: keep RMS_t in the state when clipping is off (costs one reduction).

  Returns:
    An `optax.GradientTransformation` whose state is `ScaleByStableAdamState`.
  """

  def init_fn(params):
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype or p.dtype), params)
    nu = jax.tree.map(jnp.zeros_like, params)
    rms = jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params)
    return ScaleByStableAdamState(jnp.zeros([], jnp.int32), mu, nu, rms)

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    eps_tree = leaf_eps(eps, eps_scale, updates)

    def one(g, m, v, e):
      g32, m_new, v_new, m_hat, v_hat = moments(g, m, v, count, b1, b2)
      dt = g32.dtype
      u = m_hat / (jnp.sqrt(v_hat) + e)
      if clip_threshold is not None or track_rms:
        rms = _rms(g32, v_new, e, count, b2)
      else:
        rms = jnp.zeros([], jnp.float32)
      if clip_threshold is not None:
        u = u / jnp.maximum(1.0, rms / clip_threshold).astype(dt)
      return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype), rms

    out = jax.tree.map(one, updates, state.mu, state.nu, eps_tree)
    u, mu, nu, rms = unzip(out, updates, 4)
    return u, ScaleByStableAdamState(count, mu, nu, rms)

  return optax.GradientTransformation(init_fn, update_fn)


def stable_adamw(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    clip_threshold: Optional[float] = 1.0,
    mask: Any = None,
    *,
    parametrization: Any = None,
    mu_dtype: Any = None,
    track_rms: bool = True,
    weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  """StableAdamW. Weight decay uses the unclipped learning rate, as in Algorithm 2.

  With clip_threshold=None this is `optax.adamw` (plus RMS_t in the state).
  `parametrization` is a table from `adamlab.optim.parametrize`: it scales eps and the
  learning rate per leaf. weight_decay_mode: see `with_learning_rate`.
  """
  direction = scale_by_stable_adam(
      b1, b2, eps, clip_threshold, eps_scale=eps_multipliers(parametrization),
      mu_dtype=mu_dtype, track_rms=track_rms)
  return with_learning_rate(direction, learning_rate, weight_decay, mask,
                            parametrization=parametrization,
                            weight_decay_mode=weight_decay_mode)


def _rms(g32, v_new, e, count, b2):
  """RMS_t = sqrt(mean(g^2 / max(u_t, eps^2))) of one leaf, as a float32 scalar.

  u_t already holds g_t, so g^2/u <= 1/(1-b2) and eps^2 mainly keeps 0/0 out (u_t = 0
  after zero gradients). The debiased u_t is nu / c with c = 1 - b2^t, so
  g^2 / max(u_t, eps^2) = c g^2 / max(nu, c eps^2): on the stored nu, XLA fuses the
  mean into one pass over g and nu instead of writing g^2 and u_t to memory first.
  """
  dt = g32.dtype
  c = (1 - b2**count.astype(dt)).astype(dt)
  # (tiny: c eps^2 must not flush to 0 for eps below ~1e-18, or 0/0 comes back)
  floor = jnp.maximum(c * e * e, jnp.finfo(dt).tiny)
  ratio = g32 * (g32 / jnp.maximum(v_new, floor))
  return jnp.sqrt(c * jnp.mean(ratio)).astype(jnp.float32)


def moments(g, m, v, count, b1, b2):
  """Adam's moment updates for one leaf, in float32 or wider.

  Returns (g, m_t, v_t, m_hat, v_hat); m_hat and v_hat are bias-corrected (what
  Algorithm 2's debiased betas give). Same operation order as optax.scale_by_adam.
  """
  dt = compute_dtype(g.dtype)
  g32, m32, v32 = g.astype(dt), m.astype(dt), v.astype(dt)
  m_new = (1 - b1) * g32 + b1 * m32
  v_new = (1 - b2) * (g32 * g32) + b2 * v32
  t = count.astype(dt)
  return g32, m_new, v_new, m_new / (1 - b1**t).astype(dt), v_new / (1 - b2**t).astype(dt)


def last_rms(opt_state) -> Any:
  """Per-tensor RMS_t of the last step, from any optimizer state holding StableAdam.

  Returns a pytree shaped like the params with float32 scalars (masked-out leaves
  stay `optax.MaskedNode`). Works through `optax.chain`, `masked`, `MultiSteps` and
  `inject_hyperparams`. Raises ValueError if the state has no StableAdam part.
  """
  found = states_of(opt_state, ScaleByStableAdamState)
  if len(found) != 1:
    raise ValueError(
        f"expected one ScaleByStableAdamState in the optimizer state, found {len(found)}")
  return found[0].rms
