"""Faults injected from outside adamlab: python -m tests.reliability.faults WHERE:STEPS ARGS...

Runs `adamlab ARGS...` with a data source that marks the batches STEPS (1-based batch
indices: step + batches skipped by rewinds + 1, so a rewind that skips them escapes
them) and an objective that turns a marked batch into the fault. WHERE is `loss` (the
loss is NaN) or `grad` (the gradients are Inf while the loss stays finite); a bare
STEPS means loss. The mark is a negative target, -1 - target, undone by the objective.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from adamlab import cli, data, models


def marking(source_fn, steps):
  """source_fn, whose sources mark the targets of the batches at `steps`."""

  def source(config):
    src = source_fn(config)
    clean = src.batch

    def batch(index, rows=None):
      x, y = clean(index, rows)
      if index + 1 in steps:
        y = -1 - np.asarray(y)
      return x, y

    src.batch = batch
    return src

  return source


@jax.custom_vjp
def _inf_grad(p, bad):
  return p


def _inf_grad_fwd(p, bad):
  return p, bad


def _inf_grad_bwd(bad, g):
  return g * jnp.where(bad, jnp.inf, 1.0).astype(g.dtype), None


_inf_grad.defvjp(_inf_grad_fwd, _inf_grad_bwd)


def faulty(task_fn, where):
  """task_fn, whose tasks' objectives turn a marked batch into the fault."""

  def task(model):
    clean = task_fn(model)

    class Faulty(type(clean)):
      def objective(self, apply):
        inner = super().objective(apply)

        def loss(params, inputs, targets, dropout_key=None):
          bad = jnp.any(targets < 0)
          targets = jnp.where(targets < 0, -1 - targets, targets)
          if where == "grad":
            params = jax.tree.map(lambda p: _inf_grad(p, bad), params)
          value, aux = inner(params, inputs, targets, dropout_key)
          if where == "loss":
            value = value * jnp.where(bad, jnp.nan, 1.0)
          return value, aux

        return loss

    return Faulty(*clean)

  return task


def main(argv):
  where, _, steps = argv[0].rpartition(":")
  data.source = marking(data.source, {int(s) for s in steps.split(",") if s})
  models.task = faulty(models.task, where or "loss")
  cli.main(argv[1:])


if __name__ == "__main__":
  main(sys.argv[1:])
