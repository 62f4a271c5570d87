"""Which hyperparameters matter, and do their optima move with scale (the AdamW tuning method).

Inputs come from a coordinate-descent search: per scale (a dict of the fields that set
model and data size), the chosen value of each hyperparameter and the loss-vs-value
curve of its last 1-D sweep. A hyperparameter's optimum *shifts* if it differs across
scales; the loss is *sensitive* to it if, at the optimum of the others, its grid moves
the loss by more than `threshold` (relative), or some of its values diverge. Both
together: sensitive to scale, the ones worth a scaling rule; the others can be fixed.
"""

import math


def spread(curve) -> float:
  """Relative loss range of a 1-D sweep [(value, loss)]: (max - min) / min; inf if a point
  diverged (loss None or not finite)."""
  losses = [m for _, m in curve]
  if not losses or any(m is None or not math.isfinite(m) for m in losses):
    return math.inf
  return (max(losses) - min(losses)) / abs(min(losses))


def classify(scales: list, optima: list, curves: list, threshold: float = 0.01) -> list:
  """One row per hyperparameter.

  scales[i]: the scale fields of search i, optima[i]: {field: chosen value},
  curves[i]: {field: [(value, loss)]}. Row: field, optimum per scale, shifts, the scale
  fields whose change alone moves the optimum (cause), spread, sensitive, scale_sensitive.
  """
  rows = []
  for field in optima[0]:
    chosen = [o[field] for o in optima]
    shifts = len({_key(v) for v in chosen}) > 1
    cause = set()
    for a in range(len(scales)):
      for b in range(a + 1, len(scales)):
        differ = [
          k for k in set(scales[a]) | set(scales[b]) if scales[a].get(k) != scales[b].get(k)
        ]
        if len(differ) == 1 and _key(chosen[a]) != _key(chosen[b]):
          cause.add(differ[0])
    s = max(spread(c[field]) for c in curves)
    rows.append(
      dict(
        field=field,
        optima=chosen,
        shifts=shifts,
        cause=sorted(cause),
        spread=s,
        sensitive=s > threshold,
        scale_sensitive=shifts and s > threshold,
      )
    )
  return rows


def lr_sensitivity(losses, cap: float) -> float:
  """Wortsman et al. (2023)'s learning-rate sensitivity of one loss-vs-lr curve.

  The mean over the grid of min(loss, cap) - the smallest such value: 0 if every lr
  gives the best loss, large if most of the grid is far from it. cap: the loss at
  initialization (e.g. log of the number of classes); a diverged point (None, nan or
  inf) counts as cap. The grid is taken as given: space it evenly in log lr.
  """
  capped = [cap if m is None or not math.isfinite(m) else min(float(m), cap) for m in losses]
  if not capped:
    raise ValueError("losses = []: must hold at least one point")
  return sum(capped) / len(capped) - min(capped)


def _key(v):
  return round(v, 12) if isinstance(v, float) else v


def plot(field: str, curves: list, labels: list, path: str) -> None:
  """Loss vs value of one hyperparameter, one curve per scale (diverged points left out)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5, 3.5))
  for curve, label in zip(curves, labels):
    pts = sorted((v, m) for v, m in curve if m is not None and math.isfinite(m))
    if pts:
      ax.plot([v for v, _ in pts], [m for _, m in pts], "o-", label=label)
  values = [v for c in curves for v, _ in c if isinstance(v, (int, float))]
  if values and min(values) > 0 and max(values) / min(values) >= 100:
    ax.set_xscale("log")
  ax.set_xlabel(field)
  ax.set_ylabel("loss")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
