"""Timing helpers for benchmarks: min and median over repeats, in one process."""

import platform
import statistics
import time

import jax


def time_fn(fn, *args, repeats=20, warmup=2):
  """Seconds per call of a jitted fn (blocks on its outputs): (min, median)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return min(times), statistics.median(times)


def machine() -> str:
  dev = jax.devices()[0]
  return f"{platform.processor() or platform.machine()}, {dev.platform}: {dev.device_kind}, {jax.device_count()} device(s), jax {jax.__version__}"


def train_step_time(config, repeats=20, warmup=2):
  """(min, median) seconds of the trainer's jitted train step for `config`, and the params.

  The step is the trainer's own (make_train_step, state donated) on one batch already on
  the device: what training consumes per step, with the data pipeline left out.
  """
  from adamlab import data, models
  from adamlab.train import optimizer
  from adamlab.train.step import initial_state, make_train_step

  key = jax.random.PRNGKey(config.seed)
  model, table = optimizer.build_model(config, key)
  apply, params = models.functional(model)
  tx = optimizer.build(config.optimizer, table, params)
  step = jax.jit(
    make_train_step(
      models.task(config.model).objective(apply),
      tx,
      config.ema_decay,
      dropout=config.model.dropout > 0,
    ),
    donate_argnums=0,
  )
  state = [
    initial_state(
      jax.tree.map(jax.numpy.copy, params),
      tx.init(params),
      jax.random.key_data(key),
      ema=bool(config.ema_decay),
    )
  ]
  x, y = jax.device_put(data.source(config).batch(0))

  def call():
    state[0], metrics = step(state[0], x, y)
    return metrics

  return time_fn(call, repeats=repeats, warmup=warmup), params
