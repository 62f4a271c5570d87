"""Coordinate check (Tensor Programs V): does every layer's output stay Theta(1) in width?

For each width, a few optimizer steps on one fixed batch; after each step the mean |x|
of every recorded layer output. Under muP these curves are flat in width; under SP
with Adam they grow. Works for any model, parametrization and optimizer of a config.
"""

import jax
import ml_collections
import optax

from adamlab.models import functional, task
from adamlab.train.optimizer import build, build_model


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


def run(config, widths=None, steps: int = 5, seed: int = 0, batch=None, depths=None):
  """Rows (width, depth, step, layer, l1); step 0 is at init, step t after t updates.

  widths: the model at each width (config's depth); depths: at each depth (config's
  width), with the blocks' records renamed first_block.* and last_block.* so that
  layers compare across depths.
  """
  inputs, targets = batch if batch is not None else fixed_batch(config, seed=seed)
  sizes = [("width", w) for w in widths or ()] + [("depth", d) for d in depths or ()]
  rows = []
  for field, size in sizes:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model[field] = size
    for t, records in _records(cfg, steps, seed, inputs, targets):
      if field == "depth":
        records = _ends(records, size)
      rows += [
        dict(width=cfg.model.width, depth=cfg.model.get("depth", 0), step=t, layer=k, l1=float(v))
        for k, v in records.items()
      ]
  return rows


def _records(cfg, steps, seed, inputs, targets):
  """(t, {layer: mean |output|}) for t = 0..steps: init, then after each update."""
  model, table = build_model(cfg, jax.random.PRNGKey(seed))
  apply, params = functional(model)
  tx = build(cfg.optimizer, table, params)
  loss = loss_fn(cfg, apply)

  @jax.jit
  def step(params, state):
    (value, records), grads = jax.value_and_grad(loss, has_aux=True)(params, inputs, targets)
    updates, state = tx.update(grads, state, params, loss=value)  # (skip_spikes reads it)
    return optax.apply_updates(params, updates), state, records

  state = tx.init(params)
  for t in range(steps + 1):
    if t < steps:  # the records of a step are those of the params before its update
      params, state, records = step(params, state)
    else:
      records = jax.jit(loss)(params, inputs, targets)[1]
    yield t, records


def _ends(records, depth):
  """Block records of the first and last block only, as first_block.* and last_block.*."""
  out = {}
  for k, v in records.items():
    block, _, rest = k.partition(".")
    if not (block.startswith("block") and block[5:].isdigit()):
      out[k] = v
    elif int(block[5:]) in (0, depth - 1):
      out[("first_block." if int(block[5:]) == 0 else "last_block.") + rest] = v
  return out
