"""Scaling rules for a hyperparameter's optimum (step 3 of the AdamW tuning method).

A rule is a power law in the scale fields s_i (width, depth, steps, batch, ...):

    log2 x* = c + sum_i a_i log2 s_i,      i.e.  x* = 2^c prod_i s_i^a_i.

The optimum x* at each scale is the vertex of a parabola through the best grid point
of the seed-averaged loss-vs-log2(x) curve and its two neighbours (`transfer.optimum`),
so it is not quantized to the grid. Scales whose best point is on the grid's edge say
only that the optimum lies beyond it; they are left out of the fit and listed.

Uncertainty comes from a bootstrap that resamples both sources of error: the seeds
within each scale (the optimum is re-found on the resampled mean curve) and the
scales themselves (pairs bootstrap, so a law that does not fit shows as width).
The intervals are the replicates' percentiles. With few seeds the seed resampling
counts their noise once more on top of the residuals, so the intervals lean
conservative when seed noise dominates: on synthetic searches (12 fitted scales, 2
seeds, 200 trials) the 90% intervals covered the true exponents in 97.5-98% of trials
with no scatter about the law, and in 87.5-92.5% with 0.1 to 0.3 octaves of it
(tests/analysis/test_rules.py).
"""

import math

import numpy as np

from adamlab.analysis import transfer


def curves(rows, x: str, metric: str, fields, seed_field: str = "seed") -> list:
  """Per scale, the loss of every seed at every grid value of x.

  rows: dicts with the scale fields, x, metric and seed_field; one row per (scale,
  seed, x). A missing or non-finite metric counts as diverged, and so does a (seed, x)
  with no row. Returns [{scale: {field: value}, xs: sorted log2 values, losses: array
  (seeds, len(xs)), inf where diverged}].

  Raises:
    ValueError: two rows for one (scale, seed, x).
  """
  groups: dict = {}
  for r in rows:
    groups.setdefault(tuple(r[f] for f in fields), []).append(r)
  out = []
  for key, members in groups.items():
    xs = sorted({float(r[x]) for r in members})
    seeds = sorted({r.get(seed_field, 0) for r in members})
    losses = np.full((len(seeds), len(xs)), np.inf)
    seen = set()
    for r in members:
      at = (seeds.index(r.get(seed_field, 0)), xs.index(float(r[x])))
      if at in seen:
        raise ValueError(f"two rows for {dict(zip(fields, key))}, seed {seeds[at[0]]}, {x}={r[x]}")
      seen.add(at)
      m = r.get(metric)
      if m is not None and math.isfinite(m):
        losses[at] = m
    out.append(dict(scale=dict(zip(fields, key)), xs=np.log2(xs), losses=losses))
  return out


def _optima(xs, losses):
  """transfer.optimum of each row of losses (B, G) on the log grid xs: (x, at_edge)."""
  x_out = np.full(len(losses), np.nan)
  edge = np.zeros(len(losses), bool)
  i = np.argmin(losses, axis=1)
  inner = np.isfinite(losses).all(axis=1) & (i > 0) & (i < len(xs) - 1)
  if len(xs) >= 3:  # the common case, vectorized: every point finite, an interior best
    j = np.clip(i, 1, len(xs) - 2)
    rows = np.arange(len(losses))
    with np.errstate(divide="ignore", invalid="ignore"):  # (rows with inf: redone below)
      num, den = transfer.vertex_terms(
        xs[j - 1] - xs[j],
        xs[j + 1] - xs[j],
        losses[rows, j - 1],
        losses[rows, j],
        losses[rows, j + 1],
      )
      vertex = np.where(den < 0, xs[j] + num / den, xs[j])
    x_out[inner] = np.clip(vertex, xs[j - 1], xs[j + 1])[inner]
  else:
    inner[:] = False
  for b in np.flatnonzero(~inner):  # a diverged point or an edge: the general case
    best = transfer.optimum(list(xs), list(losses[b]))
    x_out[b], edge[b] = (np.nan, True) if best is None else (best["x"], best["at_edge"])
  return x_out, edge


def _solve(design, y):
  """Least squares per replicate: design (B, n, p), y (B, n) -> (coef, stderr), (B, p);
  nan coefficients where a replicate's design is singular."""
  gram = np.einsum("bni,bnj->bij", design, design)
  ok = np.linalg.matrix_rank(gram) == design.shape[2]
  gram[~ok] = np.eye(design.shape[2])
  inv = np.linalg.inv(gram)
  coef = np.einsum("bij,bnj,bn->bi", inv, design, y)
  resid = y - np.einsum("bni,bi->bn", design, coef)
  dof = design.shape[1] - design.shape[2]
  s2 = np.sum(resid**2, axis=1) / dof
  stderr = np.sqrt(np.maximum(s2[:, None] * np.diagonal(inv, axis1=1, axis2=2), 0))
  coef[~ok] = np.nan
  return coef, stderr


def held_out(scale: dict, holdout) -> bool:
  """Whether a scale matches every field of any of the holdout's dicts."""
  return any(all(scale.get(k) == v for k, v in h.items()) for h in holdout)


def _points(scale_curves, holdout) -> list:
  """Per scale: its optimum on the seeds' mean curve, and whether the fit uses it."""
  points = []
  for c in scale_curves:
    x, edge = _optima(c["xs"], np.mean(c["losses"], axis=0, keepdims=True))
    held = held_out(c["scale"], holdout)
    finite = math.isfinite(x[0])
    points.append(
      dict(
        scale=c["scale"],
        log_x=float(x[0]) if finite else None,
        at_edge=bool(edge[0]) and finite,
        diverged=not finite,
        held_out=held,
        used=finite and not edge[0] and not held,
      )
    )
  return points


def fit(
  scale_curves, fields, level: float = 0.9, boots: int = 1000, seed: int = 0, holdout=()
) -> dict:
  """Fit log2 x* = c + sum_i a_i log2 s_i, with bootstrap intervals.

  Args:
    scale_curves: the output of `curves`.
    fields: the scale fields of the law (each must vary among the fitted scales).
    level: the confidence level of the intervals, in (0, 1).
    boots: bootstrap replicates (>= 100).
    seed: the bootstrap's random seed.
    holdout: scales (dicts of some fields) to leave out of the fit; a scale matching
      every field of any of them is held out, to be predicted.

  Returns:
    {fields, constant, exponents: {field: a}, intervals: {field: [lo, hi]},
    constant_interval, stderr (least squares), level, residual_rms (octaves), dof,
    points (per scale: scale, log_x, at_edge, diverged, held_out, used, residual),
    boots_used, replicates (coefficient vectors for `predict`), residuals}.

  Raises:
    ValueError: level or boots out of range; fewer than len(fields) + 3 scales with an
      optimum inside their grid outside the holdout; a field that does not vary among
      them; fewer than 90% of the replicates could be fitted.
  """
  fields = list(fields)
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1), got {level}")
  if boots < 100:
    raise ValueError(f"boots must be >= 100, got {boots}")
  points = _points(scale_curves, holdout)
  used = [c for c, p in zip(scale_curves, points) if p["used"]]
  n, p = len(used), len(fields) + 1
  if n < p + 2:
    edge = [
      label(q["scale"]) for q in points if (q["at_edge"] or q["diverged"]) and not q["held_out"]
    ]
    raise ValueError(
      f"{n} scales have an optimum inside their grid outside the holdout; fitting {p} "
      f"coefficients needs at least {p + 2} (at the grid's edge or diverged: "
      f"{'; '.join(edge) or 'none'})"
    )
  design = np.array([[1.0] + [math.log2(c["scale"][f]) for f in fields] for c in used])
  y = np.array([q["log_x"] for q in points if q["used"]])
  coef, stderr = (a[0] for a in _solve(design[None], y[None]))
  if not np.all(np.isfinite(coef)):
    raise ValueError(f"the fitted scales do not vary in every field of {fields}")
  resid = y - design @ coef
  reps = _bootstrap(used, design, boots, seed)
  reps = reps[np.all(np.isfinite(reps), axis=1)]
  if len(reps) < 0.9 * boots:
    raise ValueError(f"only {len(reps)} of {boots} bootstrap replicates could be fitted")
  intervals = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], axis=0).T
  for q, r in zip([q for q in points if q["used"]], resid):
    q["residual"] = float(r)
  return dict(
    fields=fields,
    constant=float(coef[0]),
    exponents={f: float(a) for f, a in zip(fields, coef[1:])},
    constant_interval=[float(v) for v in intervals[0]],
    intervals={f: [float(v) for v in iv] for f, iv in zip(fields, intervals[1:])},
    stderr={f: float(s) for f, s in zip(fields, stderr[1:])},
    level=level,
    residual_rms=float(np.sqrt(np.mean(resid**2))),
    dof=n - p,
    points=points,
    boots_used=len(reps),
    replicates=[[round(float(v), 5) for v in r] for r in reps],
    residuals=[float(r) for r in resid * math.sqrt(n / (n - p))],
  )


def _bootstrap(used, design, boots, seed):
  """The coefficients of `boots` replicates (B, p), each resampling the seeds within
  every scale and then the scales; nan where a replicate's scales cannot fit. A grid
  point where any seed diverged stays diverged in every replicate, as in the fit."""
  rng = np.random.default_rng(seed)
  ys = np.empty((boots, len(used)))
  for k, c in enumerate(used):
    losses = np.where(np.isinf(c["losses"]).any(axis=0), np.inf, c["losses"])
    pick = rng.integers(0, len(losses), (boots, len(losses)))
    ys[:, k] = _optima(c["xs"], losses[pick].mean(axis=1))[0]
  cases = rng.integers(0, len(used), (boots, len(used)))
  y = np.take_along_axis(ys, cases, axis=1)
  coefs = _solve(design[cases], y)[0]
  coefs[~np.all(np.isfinite(y), axis=1)] = np.nan
  return coefs


def predict(rule: dict, scale: dict, seed: int = 0) -> dict:
  """The optimum at a new scale, with a prediction interval at the rule's level.

  The interval adds to each bootstrap replicate's prediction one of the fit's
  residuals (rescaled by sqrt(n / (n - p))), so it covers where a new scale's measured
  optimum should fall, not only the rule's mean. Returns {log_x, x, low, high} (low and
  high as values of x, log_x in log2).
  """
  missing = [f for f in rule["fields"] if f not in scale]
  if missing:
    raise ValueError(f"scale lacks the rule's fields {missing}")
  row = np.array([1.0] + [math.log2(scale[f]) for f in rule["fields"]])
  coef = np.array([rule["constant"]] + [rule["exponents"][f] for f in rule["fields"]])
  log_x = float(row @ coef)
  reps = np.asarray(rule["replicates"]) @ row
  rng = np.random.default_rng(seed)
  reps = reps + rng.choice(np.asarray(rule["residuals"]), len(reps))
  lo, hi = np.quantile(reps, [(1 - rule["level"]) / 2, (1 + rule["level"]) / 2])
  return dict(log_x=log_x, x=2.0**log_x, low=2.0 ** float(lo), high=2.0 ** float(hi))


def combine(rule: dict, weights: dict) -> dict:
  """A linear combination sum_f w_f a_f of the exponents, with its interval from the
  same replicates (e.g. {"batch_size": 1, "steps": -1}: the batch exponent at fixed
  tokens when tokens = steps x batch). Returns {value, low, high}."""
  unknown = [f for f in weights if f not in rule["fields"]]
  if unknown:
    raise ValueError(f"weights name fields {unknown} outside the rule's {rule['fields']}")
  w = np.array([0.0] + [weights.get(f, 0.0) for f in rule["fields"]])
  reps = np.asarray(rule["replicates"]) @ w
  lo, hi = np.quantile(reps, [(1 - rule["level"]) / 2, (1 + rule["level"]) / 2])
  value = sum(weights[f] * rule["exponents"][f] for f in weights)
  return dict(value=float(value), low=float(lo), high=float(hi))


def describe(rule: dict, field: str, predictions=()) -> list:
  """Markdown lines: the law, its exponents with intervals, residuals, left-out
  scales and the held-out predictions."""
  pct = f"{rule['level']:.0%}"
  law = " ".join(f"* {f.split('.')[-1]}^{rule['exponents'][f]:+.3f}" for f in rule["fields"])
  lo, hi = rule["constant_interval"]
  lines = [
    f"## {field}",
    "",
    f"{field.split('.')[-1]}* = 2^{rule['constant']:.3f} {law}",
    "",
    f"| scale field | exponent | {pct} interval | least-squares stderr |",
    "|---|---|---|---|",
    *(
      f"| {f} | {rule['exponents'][f]:+.3f} | [{rule['intervals'][f][0]:+.3f}, "
      f"{rule['intervals'][f][1]:+.3f}] | {rule['stderr'][f]:.3f} |"
      for f in rule["fields"]
    ),
    f"| (constant, log2) | {rule['constant']:+.3f} | [{lo:+.3f}, {hi:+.3f}] | |",
    "",
    f"Fitted on {sum(p['used'] for p in rule['points'])} scales ({rule['dof']} degrees of "
    f"freedom); residual rms {rule['residual_rms']:.3f} octaves.",
  ]
  for what, key in (
    ("optimum at the grid's edge", "at_edge"),
    ("every point diverged", "diverged"),
  ):
    left = [label(p["scale"]) for p in rule["points"] if p[key] and not p["held_out"]]
    if left:
      lines.append(f"Left out, {what}: {'; '.join(left)}.")
  if predictions:
    lines += [
      "",
      f"Held out and predicted ({pct} prediction interval):",
      "",
      "| scale | predicted | interval | measured | error (octaves) | inside | "
      "loss at predicted | best loss on grid |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for p in predictions:
      mark = " (grid edge)" if p["at_edge"] else ""
      loss = p["loss_at_predicted"]
      lines.append(
        f"| {label(p['scale'])} | {p['predicted']:.4g} | [{p['low']:.4g}, {p['high']:.4g}] | "
        f"{p['measured']:.4g}{mark} | {p['error_octaves']:+.2f} | {p['inside']} | "
        f"{'diverged' if loss is None else f'{loss:.4f}'} | {p['best_grid_loss']:.4f} |"
      )
  return lines + [""]


def label(scale: dict) -> str:
  """ "width=64, steps=100": a scale's short field names and values ("base" if none)."""
  return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in scale.items()) or "base"


def plot(rule: dict, predictions, field: str, path: str, title: str = "") -> None:
  """One panel per scale field: the optimum with the other fields' terms removed
  (partial residuals) against the field, the fitted line, and the held-out scales'
  measured optima (squares) and predictions (crosses). Grid-edge optima are hollow."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fields = rule["fields"]
  fig, axes = plt.subplots(1, len(fields), figsize=(4 * len(fields), 3.4), squeeze=False)
  others = lambda scale, f: sum(
    rule["exponents"][g] * math.log2(scale[g]) for g in fields if g != f
  )
  for ax, f in zip(axes[0], fields):
    for held, color, marker, label in ((False, "C0", "o", "fitted"), (True, "C1", "s", "held out")):
      pts = [p for p in rule["points"] if p["held_out"] == held and p["log_x"] is not None]
      for edge in (False, True):
        xy = [
          (math.log2(p["scale"][f]), p["log_x"] - others(p["scale"], f))
          for p in pts
          if p["at_edge"] == edge
        ]
        if xy:
          ax.plot(
            *zip(*xy),
            ls="",
            marker=marker,
            color=color,
            mfc="none" if edge else color,
            label=label + (" (grid edge)" if edge else ""),
          )
    if predictions:
      xy = [
        (math.log2(p["scale"][f]), math.log2(p["predicted"]) - others(p["scale"], f))
        for p in predictions
      ]
      ax.plot(*zip(*xy), ls="", marker="x", color="C3", label="predicted")
    xs = np.array([math.log2(p["scale"][f]) for p in rule["points"]])
    line = np.linspace(xs.min(), xs.max(), 2)
    a = rule["exponents"][f]
    ax.plot(line, rule["constant"] + a * line, "k-", lw=1, label=f"fit, slope {a:+.2f}")
    ax.set_xlabel(f"log2 {f}")
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel(f"log2 {field.split('.')[-1]}* (partial)")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
