"""Adam-atan2 (Everett et al. 2024, App. C): Adam without epsilon.

    update = a * atan2(m_hat, b * sqrt(v_hat))

atan2 is bounded, defined at (0, 0) and unchanged when the gradients are scaled by
any constant, so there is no epsilon to underflow or to tune. a = 1/atan(1) = 1.27
makes a * atan2(x, x) = 1, Adam's step at |m_hat| = sqrt(v_hat).

XLA's CPU arctan2 is slow next to a division and would dominate a memory-bound
update, so it is evaluated as one division, one square root and a polynomial (max
error ~2e-7, about two float32 ulps of pi/2). The update works on m_hat^2 and v_hat,
which have the same scale, so every expensive operation has one use and XLA fuses the
whole update into one loop.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamlab.optim.parametrization import with_learning_rate
from adamlab.optim.stable_adam import moments, unzip

# atan(t) ~ t * P(t^2) on [0, 1]: a near-minimax fit in t^2 (weighted least squares
# on Chebyshev nodes, refined by Lawson reweighting), float32 max error 1.1e-7.
_ATAN_COEFFS = (1.0, -0.3333309292793274, 0.19993053376674652, -0.14207130670547485,
                0.10654667019844055, -0.0753365233540535, 0.043039076030254364,
                -0.01628282107412815, 0.002903503831475973)


def _atan_unit(t: jax.Array) -> jax.Array:
  """atan(t) for t in [0, 1]."""
  s = t * t
  p = jnp.asarray(_ATAN_COEFFS[-1], t.dtype)
  for c in _ATAN_COEFFS[-2::-1]:
    p = p * s + c
  return t * p


def _octant_atan2(y: jax.Array, p: jax.Array, q: jax.Array, root=None) -> jax.Array:
  """arctan2(y, x) from p = |y|, q = x >= 0 (root None) or p = y^2, q = x^2 (root sqrt).

  Octant reduction: t = min(p, q) / max(p, q) lies in [0, 1] (its root, for squares);
  atan(t) there is a polynomial, pi/2 - atan(t) gives the other octant, and the sign
  comes from y. min/max rather than selects on one shared comparison: XLA:CPU writes a
  shared predicate to memory (an extra pass over both inputs), min/max fuse.
  """
  lo, hi = jnp.minimum(p, q), jnp.maximum(p, q)
  t = lo / jnp.where(hi > 0, hi, 1)
  r = _atan_unit(t if root is None else root(t))
  return jnp.copysign(jnp.where(p > q, math.pi / 2 - r, r), y)


def atan2(y: jax.Array, x: jax.Array) -> jax.Array:
  """arctan2(y, x) for x >= 0, as one division and a polynomial.

  atan2(0, 0) = 0 and atan2(y, 0) = sign(y) pi/2, as with jnp.arctan2.
  """
  return _octant_atan2(y, jnp.abs(y), x)


def atan2_of_square(y: jax.Array, x_sq: jax.Array) -> jax.Array:
  """arctan2(y, sqrt(x_sq)), from y and x^2 (Adam's v_hat), the fusible way."""
  return _octant_atan2(y, y * y, x_sq, jnp.sqrt)


class ScaleByAdamAtan2State(NamedTuple):
  count: jax.Array  # int32 step counter.
  mu: optax.Updates  # First moment.
  nu: optax.Updates  # Second moment.


def scale_by_adam_atan2(
    b1: float = 0.9,
    b2: float = 0.99,
    a: float = 1.27,
    b: float = 1.0,
    *,
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
  """Rescale updates by a * atan2(m_hat, b * sqrt(v_hat)) with bias-corrected moments."""

  def init_fn(params):
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype or p.dtype), params)
    nu = jax.tree.map(jnp.zeros_like, params)
    return ScaleByAdamAtan2State(jnp.zeros([], jnp.int32), mu, nu)

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)

    def one(g, m, v):
      _, m_new, v_new, m_hat, v_hat = moments(g, m, v, count, b1, b2)
      u = a * atan2_of_square(m_hat, (b * b) * v_hat)
      return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

    out = jax.tree.map(one, updates, state.mu, state.nu)
    u, mu, nu = unzip(out, updates, 3)
    return u, ScaleByAdamAtan2State(count, mu, nu)

  return optax.GradientTransformation(init_fn, update_fn)


def adam_atan2(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    a: float = 1.27,
    b: float = 1.0,
    weight_decay: float = 0.0,
    mask: Any = None,
    *,
    parametrization: Any = None,
    mu_dtype: Any = None,
    weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  """Adam-atan2 with decoupled weight decay (`with_learning_rate`'s weight_decay_mode);
  `parametrization` scales lr per leaf."""
  direction = scale_by_adam_atan2(b1, b2, a, b, mu_dtype=mu_dtype)
  return with_learning_rate(direction, learning_rate, weight_decay, mask,
                            parametrization=parametrization,
                            weight_decay_mode=weight_decay_mode)
