"""Hyperparameter transfer across width: optima on a log grid, their drift, exponent fits.

A sweep gives, per group (parametrization, width, ...), a loss for each value on a
log-spaced grid (learning rate, epsilon). The optimum is refined below the grid
spacing by a parabola through the best point and its two neighbours in log
coordinates; an optimum on the edge of the grid is reported as such (the true one
lies beyond it). How an optimum scales with width is a straight-line fit in
log-log coordinates, with a standard error.
"""

import math
from typing import Optional

import numpy as np


def _finite(v) -> bool:
  return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def optimum(xs, losses) -> Optional[dict]:
  """The minimum of a loss curve sampled at xs (already in log coordinates).

  Points whose loss is missing or not finite (diverged runs) are ignored. Returns
  {x, loss, at_edge, refined}: x is the vertex of the parabola through the best point
  and its neighbours when both exist, finite, and make it a minimum; otherwise the
  best grid point. at_edge: the best grid point is the first or last finite one,
  so the optimum may lie outside the grid. None if no point is finite.
  """
  pts = sorted((x, y) for x, y in zip(xs, losses) if _finite(y))
  if not pts:
    return None
  i = min(range(len(pts)), key=lambda j: pts[j][1])
  x, y = pts[i]
  out = dict(x=x, loss=y, at_edge=i in (0, len(pts) - 1), refined=False)
  if out["at_edge"]:
    return out
  (x0, y0), (x2, y2) = pts[i - 1], pts[i + 1]
  num, den = vertex_terms(x0 - x, x2 - x, y0, y, y2)
  if den < 0:  # the best point of three is a minimum, so den <= 0; == 0 is flat
    out.update(x=x + num / den, refined=True)
    out["x"] = min(max(out["x"], x0), x2)
  return out


def vertex_terms(d0, d2, y0, y1, y2):
  """(num, den): the vertex of the parabola through (x1 + d0, y0), (x1, y1), (x1 + d2,
  y2), any spacing, is at x1 + num / den; den < 0 when y1 is below both (a minimum).
  Scalars or arrays."""
  num = d0 * d0 * (y2 - y1) - d2 * d2 * (y0 - y1)
  den = 2 * (d0 * (y2 - y1) - d2 * (y0 - y1))
  return num, den


def optima(rows, x: str, metric: str, by, base: float = 2.0) -> list:
  """One optimum per group of rows: the rows sharing the values of fields `by`.

  rows: dicts with fields x, metric and `by` (e.g. sweep results). The curve of a group
  is metric vs log_base(x). Returns, per group in first-seen order, {**group, 'log_x', x,
  metric, 'at_edge', 'refined', 'points'} (points: how many finite values it had);
  a group with no finite point has log_x None.
  """
  groups: dict = {}
  for r in rows:
    groups.setdefault(tuple(r[f] for f in by), []).append(r)
  out = []
  for key, members in groups.items():
    best = optimum([math.log(r[x], base) for r in members], [r.get(metric) for r in members])
    row = dict(zip(by, key))
    if best is None:
      row.update(log_x=None, **{x: None, metric: None}, at_edge=None, refined=False, points=0)
    else:
      row.update(
        log_x=best["x"],
        **{x: base ** best["x"], metric: best["loss"]},
        at_edge=best["at_edge"],
        refined=best["refined"],
        points=sum(_finite(r.get(metric)) for r in members),
      )
    out.append(row)
  return out


def drift(log_optima) -> float:
  """Total drift of an optimum across widths: max - min of its log value."""
  values = [v for v in log_optima if v is not None]
  return max(values) - min(values) if values else math.nan


def fit_exponent(widths, log_optima, sigma=None) -> dict:
  """Fit log_optimum = slope * log2(width) + intercept by (weighted) least squares.

  sigma: per-point uncertainty of log_optima (e.g. the grid spacing / sqrt(12) of an
  optimum known only to one grid step). The slope's standard error is the fit's
  covariance, scaled up by the reduced chi-square when the points scatter more than
  sigma says (never down). Returns {slope, stderr, intercept, n}; with fewer than two
  points, slope is nan; with exactly two and no sigma, stderr is nan.
  """
  pts = [
    (math.log2(w), y, 1.0 if sigma is None else s)
    for w, y, s in zip(widths, log_optima, sigma if sigma is not None else [None] * len(widths))
    if y is not None and math.isfinite(y)
  ]
  n = len(pts)
  if n < 2:
    return dict(slope=math.nan, stderr=math.nan, intercept=math.nan, n=n)
  x, y, s = (np.array(c, dtype=float) for c in zip(*pts))
  design = np.stack([x, np.ones_like(x)], axis=1) / s[:, None]
  cov = np.linalg.inv(design.T @ design)
  slope, intercept = cov @ design.T @ (y / s)
  dof = n - 2
  chi2 = float(np.sum(((y - slope * x - intercept) / s) ** 2))
  if sigma is None:
    scale = chi2 / dof if dof > 0 else math.nan
  else:
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
  return dict(
    slope=float(slope), stderr=float(math.sqrt(cov[0, 0] * scale)), intercept=float(intercept), n=n
  )


def smooth(values, window: int):
  """Trailing mean over `window` points (shorter at the start)."""
  c = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=float)]))
  i = np.arange(1, len(values) + 1)
  return (c[i] - c[np.maximum(i - window, 0)]) / np.minimum(i, window)


def wider_is_better(curves: dict, window: int = 1) -> dict:
  """Is the loss lower for every wider model at every logged step?

  curves: {width: (steps, losses)} over the same steps (the same batches, since a batch
  is a function of the step). Losses are smoothed with a trailing mean of `window`
  points first. Returns {steps, ordered (per step: strictly decreasing in width),
  fraction (of steps ordered), violations (per step: how many adjacent width pairs
  have the wider one not lower), holds_from (the first step from which every step is
  ordered; None if the last one is not)}. At init all widths start alike, so the
  order can only appear after some steps.
  """
  widths = sorted(curves)
  steps = curves[widths[0]][0]
  for w in widths:
    if list(curves[w][0]) != list(steps):
      raise ValueError(f"width {w}: its steps differ from width {widths[0]}'s")
  losses = np.stack([smooth(curves[w][1], window) for w in widths])  # (widths, steps)
  bad = np.sum(~(np.diff(losses, axis=0) < 0), axis=0)
  broken = np.flatnonzero(bad)
  start = 0 if not len(broken) else int(broken[-1]) + 1
  return dict(
    steps=[int(s) for s in steps],
    ordered=[bool(b == 0) for b in bad],
    fraction=float(np.mean(bad == 0)),
    violations=[int(b) for b in bad],
    holds_from=int(steps[start]) if start < len(steps) else None,
  )


def plot_curves(panels, path: str, xlabel: str, ylabel: str = "loss", ylim=None) -> None:
  """Side-by-side panels of loss curves, one line per width, each optimum marked.

  panels: [(title, {label: (xs, ys)}, {label: optimum x or None}[, {label: y}])]; the
  optional last dict draws a dashed reference level per label (e.g. a method without
  the swept hyperparameter). Non-finite ys are left out (a diverged run ends its line).
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(
    1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True, squeeze=False
  )
  for ax, (title, curves, best, *refs) in zip(axes[0], panels):
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(curves), 1)))
    for color, (label, (xs, ys)) in zip(colors, curves.items()):
      xs, ys = np.asarray(xs, float), np.asarray(ys, float)
      ok = np.isfinite(ys)
      ax.plot(xs[ok], ys[ok], marker="o", ms=3, color=color, label=str(label))
      if best.get(label) is not None:
        ax.axvline(best[label], color=color, lw=0.8, ls=":")
      if refs and label in refs[0]:
        ax.axhline(refs[0][label], color=color, lw=0.8, ls="--")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylim:
      ax.set_ylim(*ylim)
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel(ylabel)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
