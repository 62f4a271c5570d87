"""The jitted train and eval steps, and what they measure."""

import jax
import jax.numpy as jnp
import optax

from adamlab import optim


def layer_name(path) -> str:
  return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def rms_metrics(opt_state) -> dict:
  """Per-layer RMS_t of StableAdamW / AdamW as {"rms/<layer>": value}; {} for others."""
  try:
    rms = optim.last_rms(opt_state)
  except ValueError:
    return {}
  return {"rms/" + layer_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(rms)[0]}


def initial_state(params, opt_state, rng, ema: bool = False) -> dict:
  """The state make_train_step reads and returns, at step 0.

  rng: raw key data (dropout keys are folded from it and the step); ema: keep an EMA of
  the params, starting from them.
  """
  state = dict(
    params=params,
    opt_state=opt_state,
    step=jnp.zeros([], jnp.int32),
    nonfinite=jnp.zeros([], jnp.int32),
    streak_hit=jnp.zeros([], jnp.bool_),
    data_offset=jnp.zeros([], jnp.int32),
    rng=rng,
  )
  if ema:
    state["ema"] = jax.tree.map(jnp.copy, params)
  return state


def make_train_step(
  objective,
  tx,
  ema_decay: float = 0.0,
  dropout: bool = False,
  max_nonfinite: int = 1 << 30,
  accum_steps: int = 1,
):
  """state, inputs, targets -> state, metrics. A non-finite loss or gradient skips the update.

  The gradient check is on their global norm, so a step whose gradients are finite but
  whose norm overflows float32 (~1.8e19: a run that has already diverged) is skipped too.

  dropout: pass a dropout key derived from (state rng, step), so a resumed run draws the
  same masks. accum_steps: the batch is split into that many microbatches whose gradients
  are averaged in float32 (see `loss_and_grads`); the optimizer sees one update.
  tx gets the loss as an extra arg (`loss=`: optim.skip_spikes reads it); when tx holds
  skip_spikes, its spike_skipped (this step) and spike_skips (in total) are logged.
  """
  tx = optax.with_extra_args_support(tx)  # a plain GradientTransformation ignores loss=

  def train_step(state, inputs, targets):
    params = state["params"]
    key = None
    if dropout:
      key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

    (loss, aux), grads = loss_and_grads(objective, params, inputs, targets, key, accum_steps)
    updates, opt_state = tx.update(grads, state["opt_state"], params, loss=loss)
    new_params = optax.apply_updates(params, updates)
    # A nan or inf anywhere in the gradients makes their global norm non-finite: one
    # reduction, also logged, instead of one isfinite pass per leaf.
    grad_norm = optax.tree_utils.tree_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new = dict(
      state,
      params=keep(new_params, params),
      opt_state=keep(opt_state, state["opt_state"]),
      step=state["step"] + 1,
      nonfinite=jnp.where(finite, 0, state["nonfinite"] + 1),
    )
    # Sticky: a streak of max_nonfinite that ends between two host checks is not lost.
    new["streak_hit"] = state["streak_hit"] | (new["nonfinite"] >= max_nonfinite)
    if ema_decay:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema"], new_params)
      new["ema"] = keep(ema, state["ema"])
    metrics = dict(
      loss=loss,
      accuracy=aux["accuracy"],
      grad_norm=grad_norm,
      skipped=~finite,
      **step_metrics(updates, opt_state, new, finite),
    )
    return new, metrics

  return train_step


def loss_and_grads(objective, params, inputs, targets, key=None, accum_steps: int = 1):
  """((loss, aux), grads) of the batch: with accum_steps > 1, the means over that many
  equal microbatches, summed in float32 by a scan, so one microbatch's activations are
  alive at a time. Microbatch i takes rows i, i + accum_steps, ...: with the batch
  sharded in contiguous blocks over the devices, every microbatch spans all of them.
  Its dropout key is fold_in(key, i)."""
  value_and_grad = lambda x, y, k: jax.value_and_grad(
    lambda p: objective(p, x, y, k), has_aux=True
  )(params)
  if accum_steps == 1:
    return value_and_grad(inputs, targets, key)
  split = lambda a: jnp.swapaxes(
    a.reshape(a.shape[0] // accum_steps, accum_steps, *a.shape[1:]), 0, 1
  )
  f32 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float32), tree)

  def add(total, i_x_y):
    i, x, y = i_x_y
    out = value_and_grad(x, y, None if key is None else jax.random.fold_in(key, i))
    return jax.tree.map(jnp.add, total, f32(out)), None

  zero = jax.tree.map(
    lambda a: jnp.zeros(a.shape, jnp.float32),
    jax.eval_shape(value_and_grad, split(inputs)[0], split(targets)[0], key),
  )
  total, _ = jax.lax.scan(add, zero, (jnp.arange(accum_steps), split(inputs), split(targets)))
  (loss, aux), grads = jax.tree.map(lambda a: a / accum_steps, total)
  return (loss, aux), jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)


def step_metrics(updates, opt_state, new, finite) -> dict:
  """What a step logs of its update and optimizer: param norm, update RMS, per-layer
  RMS_t, lr and skip_spikes' counts. opt_state: the state the update computed; new: the
  train state kept (the old one where the step was not finite)."""
  count = sum(u.size for u in jax.tree.leaves(updates))
  metrics = dict(
    param_norm=optax.tree_utils.tree_norm(new["params"]),
    update_rms=jnp.sqrt(
      sum(jnp.sum(jnp.square(u.astype(jnp.float32))) for u in jax.tree.leaves(updates)) / count
    ),
    **rms_metrics(opt_state),
  )
  lr = optim.learning_rate(opt_state)
  if lr is not None:
    metrics["lr"] = lr
  spikes = optim.skip_stats(opt_state)
  if spikes is not None:  # (a non-finite step is discarded, not counted as a spike)
    metrics["spike_skipped"] = (spikes["spike_skipped"] & finite).astype(jnp.float32)
    metrics["spike_skips"] = optim.skip_stats(new["opt_state"])["spike_skips"]
  return metrics


def make_eval_step(objective):
  def eval_step(params, inputs, targets):
    loss, aux = objective(params, inputs, targets)
    return loss, aux["accuracy"]

  return eval_step
