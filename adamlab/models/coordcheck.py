"""Coordinate check (Tensor Programs V): does every layer's output stay Theta(1) in width?

For each width, a few optimizer steps on one fixed batch; after each step the mean |x|
of every recorded layer output. Under muP these curves are flat in width; under SP
with Adam they grow. Works for any model, parametrization and optimizer of a config.
"""

import jax
import ml_collections
import optax

from adamlab import optim
from adamlab.models.build import build, functional
from adamlab.models.task import task


def fixed_batch(config, batch_size: int = 16, seed: int = 0):
  """One deterministic batch of the model's input kind: (inputs, targets)."""
  return task(config.model).fixed_batch(batch_size, jax.random.PRNGKey(seed))


def loss_fn(config, apply):
  """loss(params, inputs, targets) -> (loss, {layer: mean |output|}) for this config."""
  objective_fn = task(config.model).objective(apply)

  def loss(params, inputs, targets):
    records = {}
    value, _ = objective_fn(params, inputs, targets, records)
    return value, records
  return loss


def run(config, widths, steps: int = 5, seed: int = 0, batch=None):
  """Rows (width, step, layer, l1); step 0 is at init, step t after t updates."""
  inputs, targets = batch if batch is not None else fixed_batch(config, seed=seed)
  rows = []
  for width in widths:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model.width = width
    model, table = build(cfg, jax.random.PRNGKey(seed))
    apply, params = functional(model)
    tx = optim.build(cfg.optimizer, table, params)
    loss = loss_fn(cfg, apply)

    @jax.jit
    def step(params, state):
      (value, records), grads = jax.value_and_grad(loss, has_aux=True)(params, inputs, targets)
      updates, state = tx.update(grads, state, params, loss=value)  # (optim.skip_spikes reads it)
      return optax.apply_updates(params, updates), state, records

    state = tx.init(params)
    for t in range(steps + 1):
      if t < steps:  # the records of a step are those of the params before its update
        params, state, records = step(params, state)
      else:
        records = jax.jit(loss)(params, inputs, targets)[1]
      rows += [dict(width=width, step=t, layer=k, l1=float(v)) for k, v in records.items()]
  return rows
