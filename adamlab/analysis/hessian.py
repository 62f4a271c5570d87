"""Sharpness (top Hessian eigenvalue) for the edge-of-stability figure.

Cohen et al. (2021): under full-batch GD with step size lr, the sharpness rises until it
reaches 2 / lr and then hovers there. We estimate it by power iteration on Hessian-vector
products, never building the Hessian.

Cohen et al. (2022), "Adaptive Gradient Methods at the Edge of Stability": for Adam the
quantity is the preconditioned sharpness, the top eigenvalue of P^-1/2 H P^-1/2 (the same
spectrum as P^-1 H) with P = diag(sqrt(v_hat) + eps), and the limit is
`adam_threshold(lr, b1)` = (2 + 2 b1) / ((1 - b1) lr), 38 / lr at b1 = 0.9. The same power
iteration takes the diagonal P as `precond`. Since P >= eps, `stable_eps` gives the eps
that keeps Adam under that limit whatever its second moment does.
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


def top_eigenvalue(
  loss_fn, params, iters: int = 20, seed: int = 0, tol: float = 1e-4, precond=None
):
  """(Rayleigh-quotient estimate, iterations used) of the dominant Hessian eigenvalue.

  Power iteration converges to the eigenvalue of largest |lambda|, so the result is
  negative if the Hessian's most negative eigenvalue outweighs its largest positive one.
  The error shrinks like (lambda_2 / lambda_1)^(2 i); stops early once two successive
  estimates agree to `tol` (relative). Starts from a random unit vector.
  precond: see `power_iteration` (with `adam_preconditioner`: the preconditioned sharpness).
  """
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  v = jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )
  lam, i, _ = power_iteration(loss_fn, params, v, iters, tol, precond)
  return lam, i


def power_iteration(loss_fn, params, v, iters: int = 20, tol: float = 1e-4, precond=None):
  """(estimate, iterations used, unit eigenvector estimate) from start vector v.

  precond: None (the Hessian H), or a pytree like params of the positive diagonal of P;
  then the operator is P^-1/2 H P^-1/2, symmetric, with the eigenvalues of P^-1 H.
  Along a training run, the previous call's vector is a good start for the next:
  the top eigenvector moves little between nearby steps. Compiled once per loss_fn
  (and once more with a preconditioner).
  """
  scale = None if precond is None else jax.tree.map(lambda d: 1.0 / jnp.sqrt(d), precond)
  v = _scale(v, 1.0 / jnp.sqrt(_dot(v, v)))
  lam = None
  for i in range(1, iters + 1):
    new, v, norm = _power_step(loss_fn, params, v, scale)
    new = float(new)
    if float(norm) == 0.0:  # v in the null space: H v = 0
      return new, i, v
    if lam is not None and abs(new - lam) <= tol * abs(new):
      return new, i, v
    lam = new
  return lam, iters, v


@functools.partial(jax.jit, static_argnums=0)
def _power_step(loss_fn, params, v, scale=None):
  """One step with the operator S H S, S = diag(scale) (the identity if scale is None)."""
  mul = (lambda t: t) if scale is None else (lambda t: jax.tree.map(jnp.multiply, t, scale))
  hv = mul(hvp(loss_fn, params, mul(v)))
  norm = jnp.sqrt(_dot(hv, hv))
  return _dot(v, hv), _scale(hv, 1.0 / jnp.where(norm > 0, norm, 1.0)), norm


def adam_preconditioner(nu, count, b2: float, eps: float):
  """Adam's diagonal preconditioner P = sqrt(v_hat) + eps, v_hat = nu / (1 - b2^count).

  nu, count: Adam's second moment and step count (optax's ScaleByAdamState.nu/.count);
  to get the P that the step from params x uses, pass the state after the update
  computed at x (its nu includes the gradient at x). Cohen et al. (2022) also fold the
  first moment's bias correction (1 - b1^t) into P; it is left out, as it is 1 to
  within 1% after 44 steps at b1 0.9.
  """
  correction = 1.0 - jnp.asarray(b2, jnp.float32) ** jnp.asarray(count, jnp.float32)
  return jax.tree.map(lambda n: jnp.sqrt(n / correction) + eps, nu)


def preconditioned_sharpness(
  loss_fn,
  params,
  nu,
  count,
  b2: float,
  eps: float,
  iters: int = 20,
  seed: int = 0,
  tol: float = 1e-4,
):
  """(estimate, iterations used) of the top eigenvalue of P^-1/2 H P^-1/2, P from
  `adam_preconditioner(nu, count, b2, eps)`: Adam's preconditioned sharpness."""
  return top_eigenvalue(loss_fn, params, iters, seed, tol, adam_preconditioner(nu, count, b2, eps))


def adam_threshold(lr, b1: float = 0.9):
  """The preconditioned-sharpness limit of Adam: (2 + 2 b1) / ((1 - b1) lr), 38 / lr at b1 0.9.

  Cohen et al. (2022), "Adaptive Gradient Methods at the Edge of Stability", arXiv
  2207.14484, Sec. 2: with P frozen, Adam is preconditioned heavy-ball (EMA) momentum.
  On a quadratic with P^-1 H eigenvalue lam, x_{t+1} - x_t = b1 (x_t - x_{t-1})
  - lr (1 - b1) lam x_t; its characteristic roots z^2 - (1 + b1 - lr (1 - b1) lam) z + b1
  stay inside the unit circle iff lr (1 - b1) lam < 2 + 2 b1 (z = -1 at equality).
  """
  return (2.0 + 2.0 * b1) / ((1.0 - b1) * np.asarray(lr, float))


def stable_eps(sharpness, lr, b1: float = 0.9):
  """The eps above which Adam's preconditioned sharpness stays under its limit, whatever v is.

  With P = sqrt(v_hat) + eps >= eps elementwise and H's top eigenvalue lam_H >= 0, every
  u has u' P^-1/2 H P^-1/2 u <= lam_H |P^-1/2 u|^2 <= (lam_H / eps) |u|^2, so the
  preconditioned sharpness is at most lam_H / eps, with equality when v_hat = 0 (a long
  stretch of tiny gradients: v decays like b2^t). It stays below `adam_threshold(lr, b1)`
  = (2 + 2 b1) / ((1 - b1) lr) for every v iff

      eps > lr (1 - b1) lam_H / (2 + 2 b1)    (lam_H / 38000 at lr 1e-3, b1 0.9).

  A sufficient condition, not a necessary one: where v_hat stays large, a smaller eps is
  also stable. sharpness: lam_H (the Hessian's, not preconditioned).
  """
  return np.asarray(sharpness, float) * (1.0 - b1) * np.asarray(lr, float) / (2.0 + 2.0 * b1)


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
  return dict(
    first=int(np.asarray(steps)[i]),
    max_ratio=float(np.max(ratio[: i + 1])),
    after_median=float(np.median(after)),
    after_within=float(np.mean(np.abs(after - 1.0) <= tol)),
  )


def spike_summary(steps, sharpness, thresholds, spikes, tol: float = 0.1) -> dict:
  """Does the (preconditioned) sharpness meet its limit, and does it at the loss spikes?

  steps, sharpness, thresholds: measurements along a run (thresholds: the limit at each,
  e.g. `adam_threshold`); spikes: steps of loss spikes (e.g. `spikes.detect`). ratio =
  sharpness / threshold. Returns {first: the first measured step with ratio >= 1 - tol,
  or None; crossings: the measured steps where the ratio goes from < 1 to >= 1;
  max_ratio, median_ratio: over all measurements; at_spike: per spike, the ratio at the
  last measurement at or before it (None if none); before: the steps of those
  measurements; at_or_above: the fraction of spikes (with a measurement) whose ratio is
  >= 1 - tol, None if there are none; measured_fraction: the fraction of measurements
  with ratio >= 1 - tol, the chance level of at_or_above for spikes placed at random}.
  """
  steps = np.asarray(steps)
  order = np.argsort(steps, kind="stable")
  steps = steps[order]
  ratio = (np.asarray(sharpness, float) / np.asarray(thresholds, float))[order]
  hit = np.flatnonzero(ratio >= 1.0 - tol)
  up = np.flatnonzero((ratio[:-1] < 1.0) & (ratio[1:] >= 1.0)) + 1
  at, before = [], []
  for s in spikes:
    i = int(np.searchsorted(steps, s, side="right")) - 1
    at.append(float(ratio[i]) if i >= 0 else None)
    before.append(int(steps[i]) if i >= 0 else None)
  known = [r for r in at if r is not None]
  return dict(
    first=int(steps[hit[0]]) if len(hit) else None,
    crossings=[int(steps[i]) for i in up],
    max_ratio=float(np.max(ratio)),
    median_ratio=float(np.median(ratio)),
    at_spike=at,
    before=before,
    at_or_above=float(np.mean(np.asarray(known) >= 1.0 - tol)) if known else None,
    measured_fraction=float(np.mean(ratio >= 1.0 - tol)),
  )
