"""Skip bad steps: drop an update whose loss or gradient norm spikes, or is not finite.

A loss spike is often set off by one bad batch; stepping on it can push Adam's
moments (and the params) somewhere training takes thousands of steps to leave, or
never does. Levanter, MaxText and OLMo-core therefore skip a step whose loss (or
gradient norm) is far above its recent level. A window of identical values (a loss
that sits at exactly 0) has std 0: then any larger value is a spike. If the loss level
has really moved (in full-batch training the same gradient comes back every step),
plain skipping would freeze the run for good; `max_in_row > 0` accepts the next step
after that many skips in a row.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from adamlab.optim import _checks
from adamlab.optim.state import states_of

METRICS = ("loss", "grad_norm", "both")


class SkipSpikesState(NamedTuple):
  """State of `skip_spikes`.

  Attributes:
    windows: {metric: float32 (window,)}, ring buffers of the last accepted values.
    accepted: int32, values accepted so far (the next slot is accepted % window).
    in_row: int32, consecutive spike skips up to now.
    skips: int32, steps skipped as spikes in total.
    nonfinite_skips: int32, steps skipped for a non-finite loss or gradient norm.
    skipped: bool, whether the last step was skipped (for either reason).
    inner_state: the wrapped optimizer's state.
  """

  windows: dict
  accepted: jax.Array
  in_row: jax.Array
  skips: jax.Array
  nonfinite_skips: jax.Array
  skipped: jax.Array
  inner_state: Any


def _monitored(metric: str) -> tuple:
  return ("loss", "grad_norm") if metric == "both" else (metric,)


def _is_spike(windows: dict, values: dict, k: float) -> jax.Array:
  """Is any value above its window's mean + k * std (population std)?"""
  spike = jnp.zeros([], jnp.bool_)
  for n, buf in windows.items():
    mean = jnp.mean(buf)
    std = jnp.sqrt(jnp.mean(jnp.square(buf - mean)))
    spike = spike | (values[n] > mean + k * std)
  return spike


def _decide(state, values: dict, finite, k: float, window: int, max_in_row: int):
  """(spike, nonfinite): is this step skipped as a spike, or as not finite?

  A non-finite step is always skipped and never forced through by max_in_row."""
  spike = finite & (state.accepted >= window) & _is_spike(state.windows, values, k)
  forced = (state.in_row >= max_in_row) if max_in_row > 0 else jnp.zeros([], jnp.bool_)
  return spike & ~forced, ~finite


def _check(k, window, metric: str, max_in_row) -> None:
  _checks.positive("k", k)
  _checks.integer("window", window, 2)
  _checks.one_of("metric", metric, METRICS)
  _checks.integer("max_in_row", max_in_row, 0)


def _values(metric: str, updates, loss) -> tuple:
  """({monitored name: float32 value}, is every monitored value and the gradient
  norm finite)."""
  values = {}
  if "loss" in _monitored(metric):
    if loss is None:
      raise ValueError(
        f"loss = None: must be passed to update(..., loss=loss) with skip_spikes(metric={metric!r})"
      )
    values["loss"] = jnp.asarray(loss, jnp.float32)
  grad_norm = optax.tree_utils.tree_norm(updates).astype(jnp.float32)
  if "grad_norm" in _monitored(metric):
    values["grad_norm"] = grad_norm
  finite = jnp.isfinite(grad_norm)
  if loss is not None:
    finite = finite & jnp.isfinite(jnp.asarray(loss, jnp.float32))
  return values, finite


def skip_spikes(
  inner: optax.GradientTransformation,
  k: float,
  window: int,
  metric: str = "loss",
  max_in_row: int = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Skip steps whose loss or gradient norm spikes or is not finite.

  With x_t the monitored value and mu, sigma the mean and population std of the last
  `window` accepted values, step t is skipped when

  .. math::

    x_t > \mu + k \sigma \quad \text{or} \quad x_t, \|g_t\| \text{ not finite}.

  A skipped step returns zero updates and leaves the inner state untouched, as if the
  batch had never come; only accepted, finite values enter the window, so a spike
  does not raise the bar for the next one. Nothing is skipped as a spike until the
  window is full; a non-finite loss or gradient norm is skipped from the first step
  and counted apart (`nonfinite_skips`). The inner state includes an injected
  schedule's step count, so a schedule falls behind by the skipped steps.

  With gradient accumulation, put it outside `optax.MultiSteps`
  (`skip_spikes(optax.MultiSteps(tx, k))`): each micro-step is judged on its own loss
  and a skipped one is not accumulated, so every update averages k accepted
  micro-steps. Inside MultiSteps it sees only the k-th micro-step, with the averaged
  gradient and that micro-step's `loss=` alone: use metric="grad_norm" there.

  Args:
    inner: the optimizer; it sees only the accepted steps.
    k: standard deviations above the window's mean that make a spike, > 0.
    window: accepted values the statistics use, an integer >= 2.
    metric: "loss" (pass `loss=` to update), "grad_norm" (the global norm of the
      incoming updates: use this wrapper outermost so they are the raw gradients) or
      "both" (a spike in either one).
    max_in_row: if > 0, after this many spike skips in a row the next step is
      accepted anyway, and its values enter the window. 0: no limit.

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is `SkipSpikesState`;
    its update takes `loss=` as a keyword argument (other extra args go to `inner`).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones(2)}
    >>> tx = optim.skip_spikes(optax.sgd(0.1), k=3.0, window=2)
    >>> state = tx.init(params)
    >>> for loss in (1.0, 1.0, 50.0, float("nan")):
    ...   updates, state = tx.update(params, state, params, loss=loss)
    >>> int(state.skips), int(state.nonfinite_skips), float(updates["w"][0])
    (1, 1, 0.0)

  References:
    Chowdhery et al. 2022, PaLM: Scaling Language Modeling with Pathways,
    arXiv:2204.02311 (skipping batches around loss spikes).
  """
  _check(k, window, metric, max_in_row)
  names = _monitored(metric)
  inner = optax.with_extra_args_support(inner)
  zero = lambda dtype: jnp.zeros([], dtype)

  def init_fn(params):
    return SkipSpikesState(
      windows={n: jnp.zeros([window], jnp.float32) for n in names},
      accepted=zero(jnp.int32),
      in_row=zero(jnp.int32),
      skips=zero(jnp.int32),
      nonfinite_skips=zero(jnp.int32),
      skipped=zero(jnp.bool_),
      inner_state=inner.init(params),
    )

  def update_fn(updates, state, params=None, *, loss=None, **extra_args):
    values, finite = _values(metric, updates, loss)
    if loss is not None:
      extra_args["loss"] = loss  # inner transforms may use it too (optax.chain does so)

    spike, nonfinite = _decide(state, values, finite, k, window, max_in_row)
    skip = spike | nonfinite
    slot = state.accepted % window
    windows = {
      n: jnp.where(skip, state.windows[n], state.windows[n].at[slot].set(values[n])) for n in names
    }

    new_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    new_updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), new_updates)
    inner_state = jax.tree.map(
      lambda new, old: jnp.where(skip, old, new), inner_state, state.inner_state
    )
    return new_updates, SkipSpikesState(
      windows=windows,
      accepted=state.accepted + (~skip).astype(jnp.int32),
      in_row=jnp.where(spike, state.in_row + 1, jnp.where(nonfinite, state.in_row, 0)),
      skips=state.skips + spike.astype(jnp.int32),
      nonfinite_skips=state.nonfinite_skips + nonfinite.astype(jnp.int32),
      skipped=skip,
      inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skip_stats(opt_state: Any) -> Optional[dict]:
  """What the `skip_spikes` wrapper in a state has skipped, for logging.

  Args:
    opt_state: an optimizer state, possibly nested in wrappers.

  Returns:
    {"spike_skipped": bool, "spike_skips": int32, "nonfinite_skips": int32}, or None
    if the state holds no `SkipSpikesState`.

  Raises:
    ValueError: if it holds several.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> tx = optim.skip_spikes(optax.sgd(0.1), k=3.0, window=10)
    >>> int(optim.skip_stats(tx.init({"w": jnp.ones(2)}))["spike_skips"])
    0
  """
  found = states_of(opt_state, SkipSpikesState)
  if not found:
    return None
  if len(found) > 1:
    raise ValueError(f"opt_state holds {len(found)} SkipSpikesState: must hold at most one")
  s = found[0]
  return {"spike_skipped": s.skipped, "spike_skips": s.skips, "nonfinite_skips": s.nonfinite_skips}
