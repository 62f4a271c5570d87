"""arctan2 for Adam-atan2's update, as one division, one square root and a polynomial.

XLA's CPU arctan2 is slow next to a division and would dominate a memory-bound
update. The polynomial's max error is ~2e-7, about two float32 ulps of pi/2.
"""

import math

import jax
import jax.numpy as jnp

# atan(t) ~ t * P(t^2) on [0, 1]: a near-minimax fit in t^2 (weighted least squares
# on Chebyshev nodes, refined by Lawson reweighting), float32 max error 1.1e-7.
_ATAN_COEFFS = (
  1.0,
  -0.3333309292793274,
  0.19993053376674652,
  -0.14207130670547485,
  0.10654667019844055,
  -0.0753365233540535,
  0.043039076030254364,
  -0.01628282107412815,
  0.002903503831475973,
)


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
