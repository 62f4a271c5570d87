"""Learning-rate schedules: linear warmup, then constant, cosine or warmup-stable-decay.

Each is `peak` times a unit-peak shape, so `peak` may be a traced value: runs packed
with jax.vmap share one schedule shape and differ in their peak learning rate.
"""

import optax

from adamlab.optim import _checks

SCHEDULES = ("constant", "warmup_cosine", "wsd")


def _check(peak, warmup_steps, total_steps=None, final_lr_ratio=0.0) -> None:
  _checks.non_negative("peak", peak)
  _checks.integer("warmup_steps", warmup_steps, 0)
  if total_steps is not None:
    _checks.integer("total_steps", total_steps, 1)
    if warmup_steps > total_steps:
      _checks.fail("warmup_steps", warmup_steps, f"<= total_steps ({total_steps})")
  _checks.number("final_lr_ratio", final_lr_ratio, 0.0, 1.0)


def warmup_cosine(
  peak: float, warmup_steps: int, total_steps: int, final_lr_ratio: float = 0.0
) -> optax.Schedule:
  r"""Linear warmup from 0 to `peak`, then cosine decay to `peak * final_lr_ratio`.

  .. math::

    \eta_t = \eta \frac{t}{w} \; (t < w), \qquad
    \eta_t = \eta \Big(r + \frac{1 - r}{2}\big(1 + \cos \pi \tfrac{t - w}{T - w}\big)\Big)

  Args:
    peak: the peak learning rate, >= 0 (may be traced).
    warmup_steps: w, an integer >= 0.
    total_steps: T, an integer >= max(1, w).
    final_lr_ratio: r, in [0, 1].

  Returns:
    An `optax.Schedule`.

  Example:
    >>> from adamlab import optim
    >>> s = optim.warmup_cosine(1.0, 10, 110)
    >>> [round(float(s(t)), 3) for t in (0, 5, 10, 60, 110)]
    [0.0, 0.5, 1.0, 0.5, 0.0]

  References:
    Loshchilov and Hutter 2017, SGDR: Stochastic Gradient Descent with Warm
    Restarts, arXiv:1608.03983.
  """
  _check(peak, warmup_steps, total_steps, final_lr_ratio)
  return _times(
    peak,
    optax.warmup_cosine_decay_schedule(
      0.0, 1.0, warmup_steps, max(total_steps, warmup_steps + 1), end_value=final_lr_ratio
    ),
  )


def wsd(
  peak: float,
  warmup_steps: int,
  total_steps: int,
  final_lr_ratio: float = 0.0,
  decay_fraction: float = 0.2,
) -> optax.Schedule:
  r"""Warmup-stable-decay: linear warmup, constant, linear decay over the last fraction.

  .. math::

    \eta_t = \eta \min\Big(\frac{t}{w}, 1, 1 - (1 - r)\frac{t - (T - D)}{D}\Big),
    \quad D = \text{decay\_fraction} \cdot T

  Args:
    peak: the peak learning rate, >= 0 (may be traced).
    warmup_steps: w, an integer >= 0.
    total_steps: T, an integer >= max(1, w).
    final_lr_ratio: r, in [0, 1].
    decay_fraction: D / T, in (0, 1].

  Returns:
    An `optax.Schedule`.

  Example:
    >>> from adamlab import optim
    >>> s = optim.wsd(1.0, 10, 100, decay_fraction=0.2)
    >>> [round(float(s(t)), 3) for t in (5, 50, 90, 100)]
    [0.5, 1.0, 0.5, 0.0]

  References:
    Hu et al. 2024, MiniCPM: Unveiling the Potential of Small Language Models with
    Scalable Training Strategies, arXiv:2404.06395.
  """
  _check(peak, warmup_steps, total_steps, final_lr_ratio)
  _checks.number("decay_fraction", decay_fraction, 0.0, 1.0, open_lo=True)
  decay_steps = max(1, round(total_steps * decay_fraction))
  stable_end = max(warmup_steps, total_steps - decay_steps)
  return _times(
    peak,
    optax.join_schedules(
      [
        optax.linear_schedule(0.0, 1.0, warmup_steps),
        optax.constant_schedule(1.0),
        optax.linear_schedule(1.0, final_lr_ratio, decay_steps),
      ],
      [warmup_steps, stable_end],
    ),
  )


def constant(peak: float, warmup_steps: int = 0) -> optax.Schedule:
  r"""Linear warmup from 0 to `peak`, then constant.

  .. math::

    \eta_t = \eta \min(t / w, 1)

  Args:
    peak: the learning rate, >= 0 (may be traced).
    warmup_steps: w, an integer >= 0 (0: constant from the first step).

  Returns:
    An `optax.Schedule`.

  Example:
    >>> from adamlab import optim
    >>> s = optim.constant(2.0, warmup_steps=4)
    >>> [float(s(t)) for t in (0, 2, 4, 100)]
    [0.0, 1.0, 2.0, 2.0]

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour,
    arXiv:1706.02677 (linear warmup).
  """
  _check(peak, warmup_steps)
  return _times(
    peak,
    optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, warmup_steps), optax.constant_schedule(1.0)], [warmup_steps]
    ),
  )


def _times(peak, unit: optax.Schedule) -> optax.Schedule:
  return lambda count: peak * unit(count)
