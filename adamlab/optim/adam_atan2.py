"""Adam-atan2: Adam without epsilon.

atan2 is bounded, defined at (0, 0) and unchanged when the gradients are scaled by any
constant, so there is no epsilon to underflow or to tune.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamlab.optim import _adam, _checks
from adamlab.optim._atan2 import atan2_of_square
from adamlab.optim.chain import ADAM_FAMILIES, check_family, with_learning_rate


class ScaleByAdamAtan2State(NamedTuple):
  """State of `scale_by_adam_atan2`.

  Attributes:
    count: int32 step counter, t - 1 before the update.
    mu: first moment, like the params.
    nu: second moment, like the params.
  """

  count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
  mu: optax.Updates
  nu: optax.Updates


def _check_atan2_args(b1, b2, a, b, mu_dtype, nesterov) -> None:
  _checks.decay_rate("b1", b1)
  _checks.decay_rate("b2", b2)
  _checks.positive("a", a)
  _checks.positive("b", b)
  _checks.float_dtype("mu_dtype", mu_dtype)
  _checks.boolean("nesterov", nesterov)


def scale_by_adam_atan2(
  b1: float = 0.9,
  b2: float = 0.999,
  *,
  a: float = 1.27,
  b: float = 1.0,
  mu_dtype: Any = None,
  nesterov: bool = False,
) -> optax.GradientTransformation:
  r"""Rescale updates by Adam-atan2's direction.

  With Adam's bias-corrected moments m_hat and v_hat:

  .. math::

    d_t = a \cdot \operatorname{atan2}\big(\hat m_t, \, b \sqrt{\hat v_t}\big)

  a = 1.27 ~ 1 / atan(1) makes a * atan2(x, x) = 1, Adam's step at |m_hat| =
  sqrt(v_hat). With nesterov, m_hat is Nesterov's look-ahead, as in
  `optax.scale_by_adam`: beta_1 m_t / (1 - beta_1^(t+1)) + (1 - beta_1) g_t /
  (1 - beta_1^t). b1 and b2 are `optax.scale_by_adam`'s first two arguments, with
  its defaults; there is no eps (nor eps_root) to take its third, so everything after
  b2 is keyword-only, named as in optax where optax has the argument.

  Args:
    b1: decay of the first moment, in [0, 1).
    b2: decay of the second moment, in [0, 1).
    a: output scale, > 0.
    b: denominator scale, > 0.
    mu_dtype: floating dtype of the first moment; None keeps the params' dtype.
    nesterov: Nesterov momentum, True or False.

  Returns:
    An `optax.GradientTransformation` whose state is `ScaleByAdamAtan2State`; its
    update raises ValueError naming the leaf for gradients of another shape than the
    params.

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> params = {"w": jnp.array([1e-15, -1e15])}  # any scale: no eps to meet
    >>> tx = optim.scale_by_adam_atan2(a=1.0)
    >>> updates, _ = tx.update(params, tx.init(params))
    >>> [round(float(u), 4) for u in updates["w"]]
    [0.7854, -0.7854]

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872 (Appendix C).
    Dozat 2016, Incorporating Nesterov Momentum into Adam (nesterov).
  """
  _check_atan2_args(b1, b2, a, b, mu_dtype, nesterov)

  def init_fn(params):
    mu, nu = _adam.zeros_moments(params, mu_dtype)
    return ScaleByAdamAtan2State(jnp.zeros([], jnp.int32), mu, nu)

  def update_fn(updates, state, params=None):
    del params
    _checks.update_shapes(updates, state.nu)
    count = optax.safe_increment(state.count)

    _, mu, nu, mu_hat, nu_hat = _adam.moments(updates, state.mu, state.nu, count, b1, b2, nesterov)
    u = jax.tree.map(
      lambda g, m, v: (a * atan2_of_square(m, (b * b) * v)).astype(g.dtype), updates, mu_hat, nu_hat
    )
    return u, ScaleByAdamAtan2State(
      count, _adam.cast_like(mu, state.mu), _adam.cast_like(nu, state.nu)
    )

  return optax.GradientTransformation(init_fn, update_fn)


def adam_atan2(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  *,
  a: float = 1.27,
  b: float = 1.0,
  mu_dtype: Any = None,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  mask: Any = None,
  nesterov: bool = False,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  r"""Adam-atan2 with decoupled weight decay and an optional width table.

  .. math::

    \theta \leftarrow \theta - \eta_t k \big(a \operatorname{atan2}(\hat m_t,
    b \sqrt{\hat v_t}) + \lambda \theta\big)

  with k the leaf's learning-rate multiplier from `parametrization` (Adam-atan2 has no
  eps, so the table's eps multipliers do not apply) and decay as `with_learning_rate`
  says. learning_rate, b1 and b2 are `optax.adamw`'s first three arguments (also
  positionally); Adam-atan2 has no eps or eps_root to take optax's next two, so the
  rest is keyword-only: an optax-style positional eps is a TypeError, not a silent
  `a`. mu_dtype, weight_decay, mask and nesterov have optax.adamw's names and
  defaults.
  The step saturates at a pi / 2 per coordinate whatever the gradients' size; in
  experiments/loss_spikes no (a, b) removed the loss spikes that eps 1e-6 removed
  from AdamW (README: "What to do").

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    b1: decay of the first moment, in [0, 1).
    b2: decay of the second moment, in [0, 1).
    a: output scale, > 0.
    b: denominator scale, > 0.
    mu_dtype: floating dtype of the first moment; None keeps the params' dtype.
    weight_decay: lambda >= 0, or a schedule (default optax.adamw's 1e-4).
    mask: which leaves decay (None: all, as optax.adamw).
    nesterov: Nesterov momentum, True or False.
    parametrization: a table from `parametrize(optimizer="adam")`, or None.
    weight_decay_mode: "coupled", "width_scaled" or "independent".

  Returns:
    An `optax.GradientTransformation`; its update raises ValueError naming the leaf
    for gradients of another shape than the params.

  Raises:
    ValueError: naming the argument, for any value out of its range, or a table
      built for another optimizer family than "adam".

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones(2)}
    >>> tx = optim.adam_atan2(1e-3, weight_decay=0.0)
    >>> updates, _ = tx.update(params, tx.init(params), params)
    >>> round(float(updates["w"][0]), 6)  # -lr * 1.27 * atan(1)
    -0.000997

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872 (Appendix C).
  """
  check_family(parametrization, ADAM_FAMILIES)
  direction = scale_by_adam_atan2(b1, b2, a=a, b=b, mu_dtype=mu_dtype, nesterov=nesterov)
  return with_learning_rate(
    direction,
    learning_rate,
    weight_decay,
    mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )
