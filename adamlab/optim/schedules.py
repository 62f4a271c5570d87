"""Learning-rate schedules: linear warmup, then constant, cosine or warmup-stable-decay.

Each is `peak` times a unit-peak shape, so `peak` may be a traced value: runs packed
with jax.vmap share one schedule shape and differ in their peak learning rate.
"""

import optax

SCHEDULES = ("constant", "warmup_cosine", "wsd")


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int,
                  final_lr_ratio: float = 0.0) -> optax.Schedule:
  """Linear warmup from 0 to `peak`, cosine decay to `peak * final_lr_ratio` at total_steps."""
  return _times(peak, optax.warmup_cosine_decay_schedule(
      0.0, 1.0, warmup_steps, max(total_steps, warmup_steps + 1), end_value=final_lr_ratio))


def wsd(peak: float, warmup_steps: int, total_steps: int, final_lr_ratio: float = 0.0,
        decay_fraction: float = 0.2) -> optax.Schedule:
  """Warmup-stable-decay: linear warmup, constant, linear decay over the last fraction."""
  decay_steps = max(1, round(total_steps * decay_fraction))
  stable_end = max(warmup_steps, total_steps - decay_steps)
  return _times(peak, optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, warmup_steps),
       optax.constant_schedule(1.0),
       optax.linear_schedule(1.0, final_lr_ratio, decay_steps)],
      [warmup_steps, stable_end]))


def constant(peak: float, warmup_steps: int = 0) -> optax.Schedule:
  """Linear warmup, then constant."""
  return _times(peak, optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, warmup_steps), optax.constant_schedule(1.0)],
      [warmup_steps]))


def _times(peak, unit: optax.Schedule) -> optax.Schedule:
  return lambda count: peak * unit(count)
