"""An optimizer from an update direction: parametrization, weight decay, learning rate."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from adamlab.optim import _checks
from adamlab.optim.table import (
  is_scale,
  masked_like,
  check_params,
  decay_width_multipliers,
  lr_multipliers,
)

# How an alias adds decoupled weight decay (`with_learning_rate`).
DECAY_MODES = ("coupled", "independent", "width_scaled")
# The table families (`parametrize`'s `optimizer`) the Adam aliases take.
ADAM_FAMILIES = ("adam",)


def check_family(table: Any, allowed: tuple) -> None:
  """ValueError naming `parametrization` unless the table was built for an allowed family.

  A table's learning-rate and eps exponents depend on the optimizer family it was
  built for (`exponents`): an SGD table under Adam gives every leaf the wrong
  learning rate, silently.
  """
  if table is None:
    return
  leaves = jax.tree.leaves(table, is_leaf=is_scale)
  if not all(is_scale(s) for s in leaves):
    _checks.fail_described(
      "parametrization",
      "not a table",
      "a table from optim.parametrize (one LeafScale per leaf)",
    )
  families = sorted({s.optimizer for s in leaves})
  if set(families) - set(allowed):
    built = ", ".join(repr(f) for f in families)
    _checks.fail_described(
      "parametrization",
      f"a table built for optimizer {built}",
      "a table built with parametrize(optimizer=...) for one of "
      + ", ".join(repr(a) for a in allowed),
    )


def scale_by_parametrization(table: Any) -> optax.GradientTransformation:
  r"""Multiply each leaf's update by its learning-rate multiplier from a table.

  .. math::

    u \leftarrow k \, u, \qquad k = \text{LeafScale.lr}

  Chain it after any direction (`optax.scale_by_adam`, `scale_by_stable_adam`,
  `scale_by_adam_atan2`, `optax.trace` for SGD) and before the learning rate. Leaves
  whose multiplier is 1 pass through untouched (no extra memory pass). This is the
  generic path: it takes a table of any family (`parametrize`'s `optimizer`), since
  it cannot know the direction; build the table for the direction you chain it
  after. The aliases (`adamw`, `muon`, ...) check the family themselves.

  Args:
    table: a table from `parametrize` (any optimizer family), or None (the identity).

  Returns:
    An `optax.GradientTransformation`; its init checks that the params have the
    structure and shapes the table was built for, its update that the updates have
    them (ValueError naming the leaf).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.ones((4, n)), "w_out": jnp.ones((n, 2))}
    >>> table = optim.parametrize(base=mlp(8), target=mlp(32))
    >>> tx = optax.chain(optax.scale_by_adam(), optim.scale_by_parametrization(table),
    ...                  optax.scale_by_learning_rate(1e-3))
    >>> state = tx.init(mlp(32))
    >>> updates, state = tx.update(mlp(32), state)
    >>> float(updates["w_out"][0, 0]) / float(updates["w_in"][0, 0])  # lr: 1/2 vs 1/2
    1.0

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872.
  """
  if table is None:
    return optax.identity()
  shapes = jax.tree.map(
    lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float32) if is_scale(s) else s,
    table,
    is_leaf=is_scale,
  )

  def init_fn(params):
    check_params(table, params)
    return optax.EmptyState()

  return _scale_leaves(lr_multipliers(table), init_fn, shapes)


def _scale_leaves(factors: Any, init_fn=None, shapes=None) -> optax.GradientTransformation:
  """Each leaf's update times its static factor, a tree of floats like the params.

  Leaves whose factor is 1 pass through untouched (no extra memory pass); leaves that
  `optax.masked` or `optax.partition` left out (MaskedNode) are skipped. init_fn:
  the transform's init (default: an empty state). shapes: a tree of the leaves'
  shapes (`jax.ShapeDtypeStruct`) that update checks the updates against, or None.
  """

  def update_fn(updates, state, params=None):
    del params
    if shapes is not None:
      _checks.update_shapes(updates, shapes)
    scaled = jax.tree.map(
      lambda u, k: u if k == 1.0 else u * k, updates, masked_like(factors, updates)
    )
    return scaled, state

  return optax.GradientTransformation(init_fn or (lambda _: optax.EmptyState()), update_fn)


def _add_decayed_weights(
  weight_decay: Any, mask: Any = None, *, scales: Any = None
) -> optax.GradientTransformation:
  """`optax.add_decayed_weights` with a static per-leaf factor: u + weight_decay * s * p.

  scales: a tree like params of Python floats (None: `optax.add_decayed_weights`
  itself). weight_decay: a scalar, also traced, or a schedule of the step count.
  """
  if scales is None:
    return optax.add_decayed_weights(weight_decay, mask)
  skip = lambda x: isinstance(x, optax.MaskedNode)
  scheduled = callable(weight_decay)

  def init_fn(params):
    del params
    if scheduled:
      return optax.ScaleByScheduleState(jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("params = None: must be passed to update (weight decay needs them)")
    wd = weight_decay
    if scheduled:
      wd = weight_decay(state.count)
      state = optax.ScaleByScheduleState(optax.safe_increment(state.count))
    one = lambda u, p, s: u if skip(u) else u + (wd * s) * p
    return jax.tree.map(one, updates, params, scales, is_leaf=skip), state

  tx = optax.GradientTransformation(init_fn, update_fn)
  return tx if mask is None else optax.masked(tx, mask)


def with_learning_rate(
  direction: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask: Any = None,
  *,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  r"""An optimizer from an update direction: the chain every alias here shares.

  With d_t the direction, k a leaf's learning-rate multiplier from the
  `parametrization` table (1 without one) and lambda the weight decay, per step:

  .. math::

    \text{coupled:} \quad \theta \leftarrow \theta - \eta_t k (d_t + \lambda \theta)

    \text{width\_scaled:} \quad \theta \leftarrow \theta - \eta_t k (d_t + \lambda m^c \theta)

    \text{independent:} \quad \theta \leftarrow \theta - \eta_t k d_t - \lambda \theta

  "coupled" is AdamW's decoupled decay. "width_scaled" multiplies lambda by the
  leaf's `decay_width_mult` m^c, the inverse of the width part m^-c of k, so k lambda
  is the same at every width (microsoft/mup's MuAdam; MuSGD's decay goes through
  momentum, this one does not). "independent" leaves the learning rate out: pass
  lambda as a schedule for Wortsman et al.'s lr_t / lr_peak factor.

  Args:
    direction: the update direction, e.g. `optax.scale_by_adam()` or `optax.trace(0.9)`.
    learning_rate: a finite number >= 0 or a schedule.
    weight_decay: lambda, >= 0, or a schedule; default 0, as
      `optax.add_decayed_weights`.
    mask: which leaves decay (a tree of bools or a callable, as optax takes it);
      None decays every leaf, as `optax.adamw`.
    parametrization: a table from `parametrize`, or None. Any optimizer family:
      this is the generic path, and the table must be built for the family of
      `direction` (the aliases check theirs).
    weight_decay_mode: "coupled", "width_scaled" or "independent".

  Returns:
    An `optax.GradientTransformation`; its update raises ValueError naming the leaf
    when an update has another shape than its param (checked at trace time, when
    params are passed).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones((3, 3))}
    >>> sgd = optim.with_learning_rate(optax.trace(0.9), 0.1)
    >>> updates, _ = sgd.update(params, sgd.init(params), params)
    >>> round(float(updates["w"][0, 0]), 6)
    -0.1

  References:
    Loshchilov and Hutter 2019, Decoupled Weight Decay Regularization,
    arXiv:1711.05101.
    Wortsman et al. 2023, Small-scale proxies for large-scale Transformer training
    instabilities, arXiv:2309.14322 (independent decay).
  """
  _checks.scalar_or_schedule("learning_rate", learning_rate)
  _checks.scalar_or_schedule("weight_decay", weight_decay)
  _checks.one_of("weight_decay_mode", weight_decay_mode, DECAY_MODES)
  lr = optax.scale_by_learning_rate(learning_rate)
  if weight_decay_mode == "independent":
    # The chain's update is already -lr * direction here: the decay enters negated.
    negated = (lambda n: -weight_decay(n)) if callable(weight_decay) else -weight_decay
    return _checked_shapes(
      optax.chain(
        direction,
        scale_by_parametrization(parametrization),
        lr,
        optax.add_decayed_weights(negated, mask),
      )
    )
  scales = None
  if weight_decay_mode == "width_scaled":
    scales = decay_width_multipliers(parametrization)
  return _checked_shapes(
    optax.chain(
      direction,
      _add_decayed_weights(weight_decay, mask, scales=scales),
      scale_by_parametrization(parametrization),
      lr,
    )
  )


def _checked_shapes(
  tx: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
  """tx whose update first checks that each update has its param's shape (ValueError
  naming the leaf), where a direction like optax.trace would broadcast silently. Its
  state is tx's: the check runs at trace time and stores nothing."""

  def update_fn(updates, state, params=None, **extra_args):
    if params is not None:
      _checks.update_shapes(updates, params)
    return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)
