"""Skip bad steps: drop an update whose loss or gradient norm spikes.

A loss spike is often set off by one bad batch; stepping on it can push Adam's
moments (and the params) somewhere training takes thousands of steps to leave, or
never does. Levanter, MaxText and OLMo-core therefore skip a step whose loss (or
gradient norm) is far above its recent level: above mean + k * std of the last
`window` accepted values (population std). A skipped step returns zero updates and
leaves the inner optimizer's state untouched, as if the batch had never come.

Only accepted values enter the window, so a spike does not raise the bar for the
next one. The inner state includes an injected schedule's step count, so a schedule
falls behind by the number of skipped steps. A window of identical values (a loss
that sits at exactly 0) has std 0: then any larger value is a spike. If the loss level
has really moved (in full-batch training the same gradient comes back every step),
plain skipping would freeze the run for good; `max_in_row > 0` accepts the next step
after that many skips in a row.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from adamlab.optim.state import states_of

METRICS = ("loss", "grad_norm", "both")


class SkipSpikesState(NamedTuple):
  windows: dict  # {metric: float32 (window,)}: ring buffer of the last accepted values.
  accepted: jax.Array  # int32: values accepted so far (the next slot is accepted % window).
  in_row: jax.Array  # int32: consecutive skipped steps up to now.
  skips: jax.Array  # int32: skipped steps in total.
  skipped: jax.Array  # bool: whether the last step was skipped.
  inner_state: Any


def _monitored(metric: str) -> tuple:
  return ("loss", "grad_norm") if metric == "both" else (metric,)


def _is_spike(windows: dict, values: dict, k: float) -> jax.Array:
  """Is any finite value above its window's mean + k * std (population std)?"""
  spike = jnp.zeros([], jnp.bool_)
  for n, buf in windows.items():
    mean = jnp.mean(buf)
    std = jnp.sqrt(jnp.mean(jnp.square(buf - mean)))
    # A non-finite value is no spike: the trainer discards that step anyway.
    spike = spike | (jnp.isfinite(values[n]) & (values[n] > mean + k * std))
  return spike


def _decide(state, values: dict, k: float, window: int, max_in_row: int):
  """(skip, push): is this step skipped, and do its values enter the window (accepted
  and finite)?"""
  spike = (state.accepted >= window) & _is_spike(state.windows, values, k)
  forced = (state.in_row >= max_in_row) if max_in_row > 0 else jnp.zeros([], jnp.bool_)
  skip = spike & ~forced
  finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in values.values()]))
  return skip, ~skip & finite


def _check(metric: str, window: int, max_in_row: int) -> None:
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  if window < 2:
    raise ValueError(f"window must be >= 2 (a std needs two values), got {window}")
  if max_in_row < 0:
    raise ValueError(f"max_in_row must be >= 0, got {max_in_row}")


def _values(metric: str, updates, loss) -> dict:
  """The monitored values of this step, float32: {"loss": ..., "grad_norm": ...}."""
  values = {}
  if "loss" in _monitored(metric):
    if loss is None:
      raise ValueError(f"skip_spikes(metric={metric!r}) needs update(..., loss=loss)")
    values["loss"] = jnp.asarray(loss, jnp.float32)
  if "grad_norm" in _monitored(metric):
    values["grad_norm"] = optax.tree_utils.tree_norm(updates).astype(jnp.float32)
  return values


def skip_spikes(
    inner: optax.GradientTransformation,
    k: float,
    window: int,
    metric: str = "loss",
    max_in_row: int = 0,
) -> optax.GradientTransformationExtraArgs:
  """Skip steps whose monitored value is above mean + k * std of the last accepted ones.

  Args:
    inner: the optimizer; it sees only the accepted steps.
    k: how many standard deviations above the window's mean make a spike.
    window: how many accepted values the statistics use; nothing is skipped until
      `window` values have been accepted.
    metric: "loss" (pass `loss=` to update), "grad_norm" (the global norm of the
      incoming updates: use this wrapper outermost so they are the raw gradients) or
      "both" (a spike in either one).
    max_in_row: > 0: after this many skips in a row the next step is accepted anyway,
      and its values enter the window. 0: no limit.

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is `SkipSpikesState`;
    its update takes `loss=` as a keyword argument (other extra args go to `inner`).
  """
  _check(metric, window, max_in_row)
  names = _monitored(metric)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return SkipSpikesState(
        windows={n: jnp.zeros([window], jnp.float32) for n in names},
        accepted=jnp.zeros([], jnp.int32), in_row=jnp.zeros([], jnp.int32),
        skips=jnp.zeros([], jnp.int32), skipped=jnp.zeros([], jnp.bool_),
        inner_state=inner.init(params))

  def update_fn(updates, state, params=None, *, loss=None, **extra_args):
    values = _values(metric, updates, loss)
    if loss is not None:
      extra_args["loss"] = loss  # inner transforms may use it too (optax.chain does so)

    skip, push = _decide(state, values, k, window, max_in_row)
    slot = state.accepted % window
    windows = {n: jnp.where(push, state.windows[n].at[slot].set(values[n]), state.windows[n])
               for n in names}

    new_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    new_updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), new_updates)
    inner_state = jax.tree.map(lambda new, old: jnp.where(skip, old, new),
                               inner_state, state.inner_state)
    return new_updates, SkipSpikesState(
        windows=windows,
        accepted=state.accepted + push.astype(jnp.int32),
        in_row=jnp.where(skip, state.in_row + 1, 0),
        skips=state.skips + skip.astype(jnp.int32),
        skipped=skip,
        inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skip_stats(opt_state) -> Optional[dict]:
  """{"spike_skipped": bool, "spike_skips": int32 total} of the skip_spikes wrapper in
  `opt_state`, or None if it has none (so a trainer can log them only when present)."""
  found = states_of(opt_state, SkipSpikesState)
  if not found:
    return None
  if len(found) > 1:
    raise ValueError(f"expected one SkipSpikesState in the optimizer state, found {len(found)}")
  return {"spike_skipped": found[0].skipped, "spike_skips": found[0].skips}
