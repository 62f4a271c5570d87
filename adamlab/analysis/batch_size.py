"""Critical batch size from steps-to-target at several batch sizes.

McCandlish et al. (2018), "An empirical model of large-batch training": the steps needed
to reach a fixed loss follow S(B) = S_min * (1 + B_noise / B). Below B_crit ~ B_noise,
doubling the batch nearly halves the steps; above it, extra batch buys little. The model
is linear in 1/B, S = S_min + c / B with c = S_min * B_crit, so ordinary least squares
fits it.
"""

import math

import numpy as np


def steps_to_target(steps, losses, target: float, window: int = 1):
  """First logged step whose trailing mean loss (over the last `window` logged points,
  that one included) is <= target; None if never (NaN losses never qualify)."""
  x = np.asarray(losses, dtype=float)
  if window < 1 or len(x) < window:
    return None
  means = np.convolve(x, np.ones(window) / window, mode="valid")  # means[i]: x[i:i+window]
  hits = np.flatnonzero(means <= target)
  return None if len(hits) == 0 else int(steps[hits[0] + window - 1])


def _points(batch_sizes, steps_needed):
  """Sorted (B, steps) pairs, runs that never reached the target (None) left out."""
  return sorted((b, s) for b, s in zip(batch_sizes, steps_needed) if s is not None)


def fit_critical(batch_sizes, steps_needed) -> dict:
  """Least-squares fit of steps = s_min + c / B: dict(s_min, b_crit = c / s_min, residual
  = root-mean-square misfit in steps). nan everywhere with < 2 distinct batch sizes."""
  pts = _points(batch_sizes, steps_needed)
  if len({b for b, _ in pts}) < 2:
    return dict(s_min=math.nan, b_crit=math.nan, residual=math.nan)
  b, s = (np.asarray(c, dtype=float) for c in zip(*pts))
  design = np.stack([np.ones_like(b), 1.0 / b], axis=1)
  (s_min, c), *_ = np.linalg.lstsq(design, s, rcond=None)
  residual = float(np.sqrt(np.mean((design @ [s_min, c] - s) ** 2)))
  return dict(s_min=float(s_min), b_crit=float(c / s_min), residual=residual)


def doubling_gains(batch_sizes, steps_needed) -> list:
  """Per consecutive pair of batch sizes (sorted): speedup = steps(b_from) / steps(b_to).
  For a doubling, 2 is perfect scaling and 1 is no gain at all."""
  pts = _points(batch_sizes, steps_needed)
  return [dict(b_from=b0, b_to=b1, speedup=s0 / s1) for (b0, s0), (b1, s1) in zip(pts, pts[1:])]
