"""Coordinate check (Tensor Programs V): does every layer's output stay Theta(1) in width?

For each width (or depth), a few optimizer steps on one fixed batch; before each step
and after the last, the RMS of every tagged layer output (`models.layers.record`),
found in the traced forward by `optim.coord_records`. Under muP these curves are flat
in width; under SP with Adam they grow. Works for any model, parametrization and
optimizer of a config.
"""

import re

import jax
import ml_collections

from adamlab import optim
from adamlab.models import functional, task
from adamlab.train.optimizer import build, build_model


def fixed_batch(config, batch_size: int = 16, seed: int = 0):
  """One deterministic batch of the model's input kind: (inputs, targets)."""
  return task(config.model).fixed_batch(batch_size, jax.random.PRNGKey(seed))


def run(config, widths=None, steps: int = 5, seed: int = 0, batch=None, depths=None):
  """Rows (width, depth, step, layer, rms); step 0 is at init, step t after t updates.

  widths: the model at each width (config's depth); depths: at each depth (config's
  width), with the blocks' layers renamed first_block.* and last_block.* so that
  layers compare across depths.
  """
  inputs, targets = batch if batch is not None else fixed_batch(config, seed=seed)
  sizes = [("width", w) for w in widths or ()] + [("depth", d) for d in depths or ()]
  rows = []
  for field, size in sizes:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.model[field] = size
    names, rms = _records(cfg, steps, seed, inputs, targets)
    names = [_block_name(k) for k in names]
    if field == "depth":
      names = [_end_name(k, size) for k in names]
    rows += [
      dict(width=cfg.model.width, depth=cfg.model.get("depth", 0), step=t, layer=k, rms=float(v))
      for t in range(steps + 1)
      for k, v in zip(names, rms[t])
      if k is not None
    ]
  return rows


def _records(cfg, steps, seed, inputs, targets):
  """(layer names, RMS (steps + 1, layers)) of the config's model on one batch."""
  model, table = build_model(cfg, jax.random.PRNGKey(seed))
  apply, params = functional(model)
  tx = build(cfg.optimizer, table, params)
  objective = task(cfg.model).objective(apply)
  forward = lambda p: apply(p, inputs)
  loss = lambda p: objective(p, inputs, targets)[0]
  return optim.coord_records(forward, loss, params, tx, steps, layers="named")


def _block_name(name: str) -> str:
  """A scanned block's tag "out[i]" under the unrolled stack's name "block{i}.out"."""
  m = re.fullmatch(r"(.*)\[(\d+)\]", name)
  return f"block{m.group(2)}.{m.group(1)}" if m else name


def _end_name(name: str, depth: int):
  """Block layers of the first and last block only, as first_block.* and last_block.*."""
  block, _, rest = name.partition(".")
  if not (block.startswith("block") and block[5:].isdigit()):
    return name
  i = int(block[5:])
  if i not in (0, depth - 1):
    return None
  return ("first_block." if i == 0 else "last_block.") + rest
