"""Adam's moment arithmetic, shared by StableAdamW and Adam-atan2."""

import jax
import jax.numpy as jnp
import optax

from adamlab.optim.parametrization import _masked_like


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
  return jax.tree.map(lambda s: eps * s, _masked_like(eps_scale, tree))


def zeros_moments(params, mu_dtype):
  """(mu, nu) at zero: mu in mu_dtype (None: the params' dtype), nu in the params'."""
  mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype or p.dtype), params)
  return mu, jax.tree.map(jnp.zeros_like, params)


def moments(updates, mu, nu, count, b1, b2):
  """Adam's moment updates, over whole trees, in float32 or wider.

  Returns trees (g, m_t, v_t, m_hat, v_hat); m_hat and v_hat are bias-corrected (what
  StableAdamW's debiased betas give). optax's own tree functions, called on the same
  trees as optax.scale_by_adam calls them: XLA may round a fused tree op differently
  from the same op on one leaf, and with clipping off the direction must be
  optax.scale_by_adam's bit for bit.
  """
  up = lambda tree: jax.tree.map(lambda x: x.astype(compute_dtype(x.dtype)), tree)
  g, m, v = up(updates), up(mu), up(nu)
  m_new = optax.tree.update_moment(g, m, b1, 1)
  v_new = optax.tree.update_moment_per_elem_norm(g, v, b2, 2)
  m_hat = optax.tree.bias_correction(m_new, b1, count)
  v_hat = optax.tree.bias_correction(v_new, b2, count)
  return g, m_new, v_new, m_hat, v_hat


def cast_like(tree, like):
  """Each leaf of `tree` in the dtype of `like`'s leaf (moments stored back)."""
  return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)
