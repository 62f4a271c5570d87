"""Sharpness (top Hessian eigenvalue) for the edge-of-stability figure.

Cohen et al. (2021): under full-batch GD with step size lr, the sharpness rises until it
reaches 2 / lr and then hovers there. We estimate it by power iteration on Hessian-vector
products, never building the Hessian.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def hvp(loss_fn, params, v):
  """H(params) @ v for pytrees, forward-over-reverse: the JVP of the gradient along v."""
  return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _scale(tree, s):
  return jax.tree.map(lambda x: x * s, tree)


def top_eigenvalue(loss_fn, params, iters: int = 20, seed: int = 0, tol: float = 1e-4):
  """(Rayleigh-quotient estimate, iterations used) of the dominant Hessian eigenvalue.

  Power iteration converges to the eigenvalue of largest |lambda|, so the result is
  negative if the Hessian's most negative eigenvalue outweighs its largest positive one.
  The error shrinks like (lambda_2 / lambda_1)^(2 i); stops early once two successive
  estimates agree to `tol` (relative). Starts from a random unit vector.
  """
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  v = jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype)
                                   for k, x in zip(keys, leaves)])
  lam, i, _ = power_iteration(loss_fn, params, v, iters, tol)
  return lam, i


def power_iteration(loss_fn, params, v, iters: int = 20, tol: float = 1e-4):
  """(estimate, iterations used, unit eigenvector estimate) from start vector v.

  Along a training run, the previous call's vector is a good start for the next:
  the top eigenvector moves little between nearby steps. Compiled once per loss_fn.
  """
  v = _scale(v, 1.0 / jnp.sqrt(_dot(v, v)))
  lam = None
  for i in range(1, iters + 1):
    new, v, norm = _power_step(loss_fn, params, v)
    new = float(new)
    if float(norm) == 0.0:  # v in the null space: H v = 0
      return new, i, v
    if lam is not None and abs(new - lam) <= tol * abs(new):
      return new, i, v
    lam = new
  return lam, iters, v


@functools.partial(jax.jit, static_argnums=0)
def _power_step(loss_fn, params, v):
  hv = hvp(loss_fn, params, v)
  norm = jnp.sqrt(_dot(hv, hv))
  return _dot(v, hv), _scale(hv, 1.0 / jnp.where(norm > 0, norm, 1.0)), norm


def edge_summary(steps, sharpness, lrs, tol: float = 0.1) -> dict:
  """Where a run's sharpness meets the GD stability limit 2 / lr, and whether it stays.

  steps, sharpness: measurements along a run; lrs: the lr at those steps (a warmup
  moves the limit). Returns {first: the first step with sharpness >= (1 - tol) * 2/lr
  or None, max_ratio: the largest sharpness * lr / 2 before it (how far below the edge
  the run started), after_median: the median of sharpness * lr / 2 from `first` on
  (~1: hovering at the edge), after_within: the fraction of those within tol of 1}.
  """
  ratio = np.asarray(sharpness, float) * np.asarray(lrs, float) / 2.0
  hit = np.flatnonzero(ratio >= 1.0 - tol)
  if not len(hit):
    return dict(first=None, max_ratio=float(np.max(ratio)), after_median=None, after_within=None)
  i = int(hit[0])
  after = ratio[i:]
  return dict(first=int(np.asarray(steps)[i]), max_ratio=float(np.max(ratio[:i + 1])),
              after_median=float(np.median(after)),
              after_within=float(np.mean(np.abs(after - 1.0) <= tol)))
