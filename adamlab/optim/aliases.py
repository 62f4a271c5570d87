"""Lion, SGD with momentum and Adafactor, with width tables and decoupled weight decay.

Each is `with_learning_rate` around an Optax direction (`optax.scale_by_lion`,
`optax.trace`, Adafactor's factored second moment): the positional arguments are the
Optax alias's, in its order, with its names and defaults; adamlab's own
(`parametrization`, `weight_decay_mode`, and weight decay where Optax has none) are
keyword-only. Each refuses a table built for another optimizer family than its own.
"""

from typing import Any, Optional

import jax
import numpy as np
import optax

from adamlab.optim import _checks
from adamlab.optim.chain import ADAM_FAMILIES, check_family, with_learning_rate

# The table families (`parametrize`'s `optimizer`) each alias takes. Lion's sign update
# has Adam's size (one per coordinate), so it takes Adam's exponents.
SGD_FAMILIES = ("sgd",)
ADAFACTOR_FAMILIES = ("adafactor",)


def lion(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.99,
  mu_dtype: Any = None,
  weight_decay: optax.ScalarOrSchedule = 1e-3,
  mask: Any = None,
  *,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  r"""Lion (EvoLved Sign Momentum) with decoupled weight decay and an optional width table.

  .. math::

    c_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
    \theta \leftarrow \theta - \eta_t k \big(\operatorname{sign}(c_t) + \lambda \theta\big),
    \quad m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t

  with m_0 = 0, sign(0) = 0, k the leaf's learning-rate multiplier from the
  `parametrization` table (1 without one) and decay as `with_learning_rate` says.
  Every coordinate moves by eta_t k, as Adam's would at its largest: the table is
  built for the "adam" family. Its signature is `optax.lion`'s up to `mask`
  (positional arguments in optax's order, names and defaults); without a table it is
  `optax.lion` bit for bit. The paper's advice: a learning rate 3-10x smaller than
  AdamW's and a weight decay 3-10x larger, so that eta lambda stays the same.

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    b1: interpolation between the momentum and the gradient in the update, in [0, 1).
    b2: decay of the momentum m_t, in [0, 1).
    mu_dtype: floating dtype of the momentum; None keeps the params' dtype.
    weight_decay: lambda >= 0, or a schedule (default optax.lion's 1e-3).
    mask: which leaves decay (None: all, as optax.lion).
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
    >>> mlp = lambda n: {"w_in": jnp.ones((4, n)), "w_h": jnp.ones((n, n))}
    >>> table = optim.parametrize(base=mlp(8), target=mlp(32))  # muP for Adam
    >>> tx = optim.lion(1e-4, weight_decay=0.0, parametrization=table)
    >>> updates, _ = tx.update(mlp(32), tx.init(mlp(32)), mlp(32))
    >>> float(updates["w_h"][0, 0]) / float(updates["w_in"][0, 0])  # lr: 1/4 vs 1/2
    0.5

  References:
    Chen et al. 2023, Symbolic Discovery of Optimization Algorithms,
    arXiv:2302.06675 (Program 1).
  """
  _checks.decay_rate("b1", b1)
  _checks.decay_rate("b2", b2)
  _checks.float_dtype("mu_dtype", mu_dtype)
  check_family(parametrization, ADAM_FAMILIES)
  return with_learning_rate(
    optax.scale_by_lion(b1, b2, mu_dtype),
    learning_rate,
    weight_decay,
    mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )


def sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: Optional[float] = None,
  nesterov: bool = False,
  accumulator_dtype: Any = None,
  *,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask: Any = None,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  r"""SGD with heavy-ball or Nesterov momentum, decoupled weight decay and a width table.

  .. math::

    m_t = \mu m_{t-1} + g_t, \quad
    d_t = \begin{cases} g_t + \mu m_t & \text{nesterov} \\ m_t & \text{otherwise}
    \end{cases}, \quad
    \theta \leftarrow \theta - \eta_t k (d_t + \lambda \theta)

  with m_0 = 0, k the leaf's learning-rate multiplier from the `parametrization`
  table (1 without one) and decay as `with_learning_rate` says: decoupled, so it does
  not go through the momentum. With a constant learning rate this is Polyak's
  theta_(t+1) = theta_t - eta g_t + mu (theta_t - theta_(t-1)), and with nesterov
  Sutskever et al.'s look-ahead step, written at the look-ahead point (as
  `optax.trace` and PyTorch do). A momentum of 0.0 is plain SGD, d_t = g_t exactly
  (for finite gradients); it keeps the momentum's state, so that
  `optax.inject_hyperparams` may vary it. momentum=None drops the state.

  Its signature is `optax.sgd`'s (positional arguments in optax's order, names and
  defaults); adamlab's own are keyword-only. With weight_decay 0 and no table it is
  `optax.sgd` bit for bit.

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    momentum: mu, in [0, 1), or None for no momentum (plain SGD, no state).
    nesterov: Nesterov momentum, True or False (no effect without momentum).
    accumulator_dtype: floating dtype of the momentum; None keeps the params' dtype.
    weight_decay: lambda >= 0, or a schedule (default 0).
    mask: which leaves decay (None: all).
    parametrization: a table from `parametrize(optimizer="sgd")`, or None.
    weight_decay_mode: "coupled", "width_scaled" or "independent".

  Returns:
    An `optax.GradientTransformation`; its update raises ValueError naming the leaf
    for gradients of another shape than the params.

  Raises:
    ValueError: naming the argument, for any value out of its range, or a table
      built for another optimizer family than "sgd".

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones((2, 2))}
    >>> tx = optim.sgd(0.1, momentum=0.9)
    >>> state = tx.init(params)
    >>> for _ in range(2):  # m_2 = g + 0.9 g
    ...   updates, state = tx.update(params, state, params)
    >>> round(float(updates["w"][0, 0]), 6)
    -0.19

  References:
    Polyak 1964, Some methods of speeding up the convergence of iteration methods,
    USSR Computational Mathematics and Mathematical Physics 4(5).
    Sutskever et al. 2013, On the importance of initialization and momentum in deep
    learning, ICML (nesterov).
    Yang et al. 2022, Tensor Programs V, arXiv:2203.03466 (muP for SGD).
  """
  if momentum is not None:
    _checks.decay_rate("momentum", momentum)
  _checks.boolean("nesterov", nesterov)
  _checks.float_dtype("accumulator_dtype", accumulator_dtype)
  check_family(parametrization, SGD_FAMILIES)
  direction = optax.identity()
  if momentum is not None:
    direction = optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
  return with_learning_rate(
    direction,
    learning_rate,
    weight_decay,
    mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )


def _check_adafactor_args(min_dim_size_to_factor, decay_offset) -> None:
  """The two integer arguments: min_dim_size_to_factor picks the computation (static),
  decay_offset may be injected (an array, then traced)."""
  m = min_dim_size_to_factor
  if isinstance(m, (bool, np.bool_)) or not isinstance(m, (int, np.integer)) or m < 0:
    _checks.fail(
      "min_dim_size_to_factor",
      m,
      "a Python integer >= 0 (static: name it in optax.inject_hyperparams' static_args)",
    )
  allowed = "an integer >= 0"
  if callable(decay_offset):
    _checks.fail("decay_offset", decay_offset, allowed)
  _checks.number("decay_offset", decay_offset, 0.0, allowed=allowed)
  if not isinstance(decay_offset, jax.core.Tracer) and float(np.asarray(decay_offset)) % 1:
    _checks.fail("decay_offset", decay_offset, allowed)


def adafactor(
  learning_rate: optax.ScalarOrSchedule,
  min_dim_size_to_factor: int = 128,
  decay_rate: float = 0.8,
  decay_offset: int = 0,
  multiply_by_parameter_scale: bool = True,
  clipping_threshold: Optional[float] = 1.0,
  *,
  eps: float = 1e-30,
  factored: bool = True,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask: Any = None,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  r"""Adafactor: factored second moments, block-RMS clipping, relative step size.

  Per leaf G_t, with t the step count from 1 (a leaf whose two largest axes are both
  >= min_dim_size_to_factor is factored over those two, as a matrix of rows and
  columns; any other leaf keeps a full V_t):

  .. math::

    \hat\beta_t = 1 - (t - \text{decay\_offset})^{-c}, \quad
    R_t = \hat\beta_t R_{t-1} + (1 - \hat\beta_t)\,\overline{(G_t^2 + \epsilon)}^{\,\text{cols}},
    \quad C_t = \hat\beta_t C_{t-1} + (1 - \hat\beta_t)\,
    \overline{(G_t^2 + \epsilon)}^{\,\text{rows}}

    V_t = R_t C_t^\top / \operatorname{mean}(R_t) \ \text{(factored)}, \quad
    V_t = \hat\beta_t V_{t-1} + (1 - \hat\beta_t)(G_t^2 + \epsilon) \ \text{(not)}

    U_t = G_t / \sqrt{V_t}, \quad \hat U_t = U_t / \max(1, \operatorname{RMS}(U_t) / d),
    \quad \theta \leftarrow \theta - \eta_t k \big(\max(\epsilon_2, \operatorname{RMS}(\theta))
    \hat U_t + \lambda \theta\big)

  with c the decay_rate, d the clipping_threshold, epsilon_2 = 1e-3, k the leaf's
  learning-rate multiplier from the `parametrization` table (1 without one) and decay
  as `with_learning_rate` says. The means (over the rows, the columns) are the
  paper's sums divided by their counts, which leaves V_t unchanged. This is the
  paper's Algorithm 4 and 5 without its first moment, with Optax's decay schedule
  and defaults (`optax.scale_by_factored_rms`, `optax.clip_by_block_rms`,
  `optax.scale_by_param_block_rms`); the weight decay is decoupled, added after the
  parameter scale and multiplied by the learning rate, not Optax's
  `weight_decay_rate`. Without decay and a table it is `optax.adafactor` up to
  rounding (optax multiplies by the learning rate before the parameter scale).

  The positional arguments are `optax.adafactor`'s up to `clipping_threshold`, in its
  order, with its names and defaults; `eps` and `factored` keep optax's names and
  defaults but are keyword-only (optax's momentum and weight_decay_rate, which sit
  between them, are not taken).

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    min_dim_size_to_factor: factor a leaf only when its two largest axes are both at
      least this size; a Python integer >= 0 (it picks the state's shapes: under
      `optax.inject_hyperparams`, name it in `static_args`, as for optax.adafactor).
    decay_rate: c in 1 - t^-c, in [0, 1] (1: V_t is the running mean of G^2; 0: the
      last G^2 only).
    decay_offset: the step count at which the schedule restarts (fine-tuning from a
      restored state, whose count must be past it); an integer >= 0.
    multiply_by_parameter_scale: scale each leaf's step by max(1e-3, RMS(theta)) (the
      relative step size), True or False.
    clipping_threshold: d, the largest RMS of U_t, > 0, or None for no clipping.
    eps: epsilon added to G^2, > 0 (a zero gradient would otherwise divide 0 by 0).
    factored: factor the second moments of matrices, True or False.
    weight_decay: lambda >= 0, or a schedule (default 0).
    mask: which leaves decay (None: all).
    parametrization: a table from `parametrize(optimizer="adafactor")`, or None.
    weight_decay_mode: "coupled", "width_scaled" or "independent".

  Returns:
    An `optax.GradientTransformation`; its update needs the params (the parameter
    scale and the leaves' shapes) and raises ValueError naming the leaf for
    gradients of another shape than the params.

  Raises:
    ValueError: naming the argument, for any value out of its range, or a table
      built for another optimizer family than "adafactor".

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones((2, 2))}  # below min_dim_size_to_factor: V_t is full
    >>> tx = optim.adafactor(1e-2)
    >>> updates, _ = tx.update(params, tx.init(params), params)
    >>> round(float(updates["w"][0, 0]), 6)  # U_1 = G / |G|, RMS(theta) = 1
    -0.01

  References:
    Shazeer and Stern 2018, Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost, arXiv:1804.04235.
  """
  _check_adafactor_args(min_dim_size_to_factor, decay_offset)
  _checks.number("decay_rate", decay_rate, 0.0, 1.0)
  _checks.boolean("multiply_by_parameter_scale", multiply_by_parameter_scale)
  if clipping_threshold is not None:
    _checks.positive("clipping_threshold", clipping_threshold)
  _checks.positive("eps", eps)
  _checks.boolean("factored", factored)
  check_family(parametrization, ADAFACTOR_FAMILIES)
  direction = optax.chain(
    optax.scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
    optax.identity() if clipping_threshold is None else optax.clip_by_block_rms(clipping_threshold),
    optax.scale_by_param_block_rms() if multiply_by_parameter_scale else optax.identity(),
  )
  return with_learning_rate(
    direction,
    learning_rate,
    weight_decay,
    mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )
