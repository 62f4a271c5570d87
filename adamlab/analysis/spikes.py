"""Loss spikes and per-layer RMS_t spikes: do RMS spikes precede loss spikes?

StableAdamW (Wortsman et al. 2023) plots RMS_t = sqrt(mean(g_t^2 / v_t)) per layer and
reports that a loss spike follows an RMS spike within a few steps far more often than
chance (~1% by chance). This module measures that for a logged run.

Spike heuristic (`detect`), for a series x of positive values (loss, RMS_t):
  * history(t) = the finite values among x[t - window : t] (the previous `window` points);
  * no detection at t while history(t) has fewer than `min_history` points;
  * t is a spike point if x[t] > k * median(history(t)) + floor, or if x[t] is NaN/inf
    (a non-finite loss is a spike), given enough finite history. The absolute `floor`
    matters for a loss that trains to ~0, where any positive value is above k * 0;
  * spike points at most `gap` steps apart are one event (gap 1: consecutive points),
    reported by its first index, so a blow-up that stays high (or NaN), or oscillates,
    for many steps counts once.

Events are lists of step indices into the series; `n` is the series length.
"""

import numpy as np


def detect(
  values, k: float = 2.0, window: int = 20, min_history: int = 5, floor: float = 0.0, gap: int = 1
) -> list:
  """Sorted first indices of spike events in `values` (see the module docstring)."""
  return [start for start, _ in events(values, k, window, min_history, floor, gap)]


def events(
  values, k: float = 2.0, window: int = 20, min_history: int = 5, floor: float = 0.0, gap: int = 1
) -> list:
  """[(first, last)] spike points of each event of `detect`, both inclusive."""
  x = np.asarray(values, dtype=float)
  points = []
  for t in range(len(x)):
    history = x[max(0, t - window) : t]
    history = history[np.isfinite(history)]
    if len(history) < min_history:
      continue
    if not np.isfinite(x[t]) or x[t] > k * np.median(history) + floor:
      points.append(t)
  out: list = []
  for t in points:
    if out and t - out[-1][1] <= gap:
      out[-1][1] = t
    else:
      out.append([t, t])
  return [tuple(e) for e in out]


def heights(values, found) -> list:
  """The largest value of each event [(first, last)] (inf if any is not finite)."""
  x = np.asarray(values, dtype=float)
  return [
    float(np.max(np.where(np.isfinite(x[a : b + 1]), x[a : b + 1], np.inf))) for a, b in found
  ]


def _followed(causes, effects, window: int) -> np.ndarray:
  """Per cause t: is there an effect e with t <= e <= t + window."""
  effects = np.sort(np.asarray(effects, dtype=int))
  causes = np.asarray(causes, dtype=int)
  first = np.searchsorted(effects, causes, side="left")  # first effect >= t
  last = np.searchsorted(effects, causes + window, side="right")  # past effects <= t + window
  return last > first


def follow_probability(causes, effects, window: int, n: int) -> float:
  """Fraction of cause events in [0, n) with an effect event in [t, t + window]; nan if none."""
  causes = [t for t in causes if 0 <= t < n]
  if not causes:
    return float("nan")
  return float(np.mean(_followed(causes, effects, window)))


def chance_exact(effects, window: int, n: int) -> float:
  """The follow probability of one uniformly random cause in [0, n): the fraction of
  positions t with an effect in [t, t + window]. Also the expectation for any number of
  causes placed at random, since each is marginally uniform."""
  if n <= 0:
    return float("nan")
  return float(np.mean(_followed(np.arange(n), effects, window)))


def chance_probability(
  num_causes: int, effects, window: int, n: int, trials: int = 1000, seed: int = 0
) -> float:
  """Monte-Carlo follow probability of `num_causes` causes placed uniformly at random
  (without replacement) in [0, n), averaged over `trials`; nan if no causes."""
  if num_causes <= 0 or n <= 0:
    return float("nan")
  rng = np.random.default_rng(seed)
  return float(
    np.mean(
      [
        follow_probability(rng.choice(n, num_causes, replace=False), effects, window, n)
        for _ in range(trials)
      ]
    )
  )


def lag(causes, effects, max_lag: int) -> list:
  """Per effect event with a cause within max_lag (either side): effect - nearest cause.

  Positive: the cause came first (RMS leads the loss). Ties go to the earlier cause;
  effects with no cause within max_lag are left out.
  """
  causes = np.sort(np.asarray(causes, dtype=int))
  offsets = []
  for e in effects:
    if len(causes) == 0:
      break
    d = e - causes
    best = d[np.lexsort((-d, np.abs(d)))[0]]  # smallest |d|, then the positive one
    if abs(best) <= max_lag:
      offsets.append(int(best))
  return offsets


def crossings(values, level: float = 1.0) -> list:
  """Indices where `values` rises above `level` (x[t] > level >= x[t - 1]): e.g. RMS_t
  going over 1, where the second moment stops covering g^2."""
  x = np.asarray(values, dtype=float)
  above = x > level
  return [int(t) for t in np.flatnonzero(above) if t > 0 and not above[t - 1]]


def lead(causes, effects, max_lead: int) -> list:
  """Per effect, effect - the latest cause at or before it, or None if none within max_lead
  (how long before a loss spike, say, RMS_t last went over 1)."""
  causes = np.sort(np.asarray(causes, dtype=int))
  out = []
  for e in effects:
    i = np.searchsorted(causes, e, side="right") - 1
    out.append(int(e - causes[i]) if i >= 0 and e - causes[i] <= max_lead else None)
  return out


def summary(
  rms_by_layer: dict,
  loss,
  k: float = 2.0,
  window: int = 20,
  follow_window: int = 10,
  loss_spike=None,
) -> list:
  """One row per layer: layer, rms_spikes, loss_spikes (event indices), p_follow (loss spike
  within follow_window after an RMS spike), p_chance (the exact chance value), median_lag
  (of `lag` within follow_window; nan if none). Spikes are `detect(x, k, window)`;
  loss_spike: all the `detect` arguments for the loss instead (e.g. with a floor)."""
  loss_spikes = detect(loss, **(loss_spike or dict(k=k, window=window)))
  n = len(loss)
  p_chance = chance_exact(loss_spikes, follow_window, n)
  rows = []
  for layer, rms in rms_by_layer.items():
    rms_spikes = detect(rms, k, window)
    lags = lag(rms_spikes, loss_spikes, follow_window)
    rows.append(
      dict(
        layer=layer,
        rms_spikes=rms_spikes,
        loss_spikes=loss_spikes,
        p_follow=follow_probability(rms_spikes, loss_spikes, follow_window, n),
        p_chance=p_chance,
        median_lag=float(np.median(lags)) if lags else float("nan"),
      )
    )
  return rows


def pooled(
  runs,
  layers,
  k: float = 2.0,
  window: int = 20,
  follow_window: int = 10,
  loss_spike=None,
  find=None,
) -> dict:
  """RMS-spike -> loss-spike statistics pooled over runs and over the given layers.

  runs: [(rms_by_layer, loss)]. Every RMS spike event of a listed layer in any run is
  one cause. Returns {rms_spikes, loss_spikes (total events), p_follow (followed causes
  / causes), p_chance (the exact chance value of each cause's run, averaged over the
  causes), median_lag (nan if no lags), lags}. loss_spike: as in `summary`; find: the
  causes of an RMS series (default `detect(x, k, window)`; e.g. `crossings`).
  """
  find = find or (lambda x: detect(x, k, window))
  causes = followed = loss_events = 0
  chance, lags = [], []
  for rms_by_layer, loss in runs:
    effects = detect(loss, **(loss_spike or dict(k=k, window=window)))
    n = len(loss)
    loss_events += len(effects)
    p0 = chance_exact(effects, follow_window, n)
    for layer in layers:
      c = find(rms_by_layer[layer])
      causes += len(c)
      followed += int(np.sum(_followed(c, effects, follow_window))) if c else 0
      chance += [p0] * len(c)
      lags += lag(c, effects, follow_window)
  return dict(
    rms_spikes=causes,
    loss_spikes=loss_events,
    p_follow=followed / causes if causes else float("nan"),
    p_chance=float(np.mean(chance)) if chance else float("nan"),
    median_lag=float(np.median(lags)) if lags else float("nan"),
    lags=lags,
  )


def depth(layer: str) -> float:
  """Position of a layer from the input: embeddings 0, `blocks.i` (a transformer block)
  or `layers.i` (an MLP's hidden layer) i + 1, anything else (final norm, head, readout) inf."""
  parts = layer.split(".")
  for stack in ("blocks", "layers"):
    if stack in parts and parts.index(stack) + 1 < len(parts):
      return int(parts[parts.index(stack) + 1]) + 1
  return 0 if any(w in layer for w in ("embed", "cls")) else float("inf")
