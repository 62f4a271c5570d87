"""Adam's moment arithmetic, shared by StableAdamW and Adam-atan2."""

import jax
import jax.numpy as jnp
import optax

from adamlab.optim.table import masked_like


def compute_dtype(dtype) -> jnp.dtype:
  """float32 for a low-precision dtype (computed there, stored back in its own), else dtype."""
  return jnp.promote_types(dtype, jnp.float32)


def unzip(out, like, n: int):
  """A tree of n-tuples (one per leaf of `like`) -> n trees.

  A tree with no leaves ({}, or only the MaskedNodes of an optax.partition branch that
  got no leaf) has no tuples to transpose: each of the n trees is `out` itself.
  """
  if not jax.tree.leaves(like):
    return (out,) * n
  return jax.tree.transpose(jax.tree.structure(like), jax.tree.structure((0,) * n), out)


def leaf_eps(eps, eps_scale, tree):
  """eps per leaf: a scalar eps times an optional static per-leaf multiplier tree."""
  if eps_scale is None:
    return jax.tree.map(lambda _: eps, tree)
  return jax.tree.map(lambda s: eps * s, masked_like(eps_scale, tree))


def zeros_moments(params, mu_dtype):
  """(mu, nu) at zero: mu in mu_dtype (None: the params' dtype), nu in the params'.

  mu_dtype is canonicalized as optax.scale_by_adam does (float64 is float32 unless
  jax_enable_x64).
  """
  if mu_dtype is not None:
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype)
  mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype or p.dtype), params)
  return mu, jax.tree.map(jnp.zeros_like, params)


def moments(updates, mu, nu, count, b1, b2, nesterov=False):
  r"""Adam's moment updates, over whole trees, as optax.scale_by_adam computes them.

  Returns trees (g, m_t, v_t, m_hat, v_hat); m_hat and v_hat are bias-corrected (what
  StableAdamW's debiased betas give). With nesterov, m_hat is Nesterov's look-ahead
  (Dozat 2016), as optax.scale_by_adam computes it:

  .. math::

    \hat m_t = \beta_1 \frac{m_t}{1 - \beta_1^{t+1}} + (1 - \beta_1) \frac{g_t}{1 - \beta_1^t}

  optax's own tree functions, called on the same trees as optax.scale_by_adam calls
  them: XLA may round a fused tree op differently from the same op on one leaf, and
  with clipping off the direction must be optax.scale_by_adam's bit for bit. count:
  t, the step count after its increment.

  Beside a low-precision gradient (bfloat16, float16) the moments are computed in
  float32. Beside a float32 gradient they keep their stored dtype and jnp's promotion
  does the rest, as in optax: with a bfloat16 mu_dtype, b1 m_{t-1} is rounded to
  bfloat16 before it meets the float32 (1 - b1) g_t, exactly as optax.scale_by_adam
  rounds it.
  """
  low = lambda x: compute_dtype(x.dtype) != x.dtype
  g = jax.tree.map(lambda x: x.astype(compute_dtype(x.dtype)), updates)
  up = lambda tree: jax.tree.map(
    lambda x, grad: x.astype(compute_dtype(x.dtype)) if low(grad) else x, tree, updates
  )
  m, v = up(mu), up(nu)
  m_new = optax.tree.update_moment(g, m, b1, 1)
  v_new = optax.tree.update_moment_per_elem_norm(g, v, b2, 2)
  if nesterov:
    m_hat = jax.tree.map(
      lambda m, g: b1 * m + (1 - b1) * g,
      optax.tree.bias_correction(m_new, b1, optax.safe_increment(count)),
      optax.tree.bias_correction(g, b1, count),
    )
  else:
    m_hat = optax.tree.bias_correction(m_new, b1, count)
  v_hat = optax.tree.bias_correction(v_new, b2, count)
  return g, m_new, v_new, m_hat, v_hat


def cast_like(tree, like):
  """Each leaf of `tree` in the dtype of `like`'s leaf (moments stored back)."""
  return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)
