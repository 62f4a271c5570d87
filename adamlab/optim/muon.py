"""Muon inside the parametrization table: the table says which leaves Muon
orthogonalizes, along which axes, and each leaf's learning-rate multiplier.

Newton-Schulz orthogonalization and momentum are optax's own
(`optax.contrib.scale_by_muon`); this module routes the leaves: hidden matrices (and
hidden multi-axis kernels, through their fan-in axes) to Muon, everything else
(embeddings, readout, vectors) to Adam, and applies the shape factor, a constant of
each leaf's shape.
"""

import math
from typing import Any

import jax
import optax
from optax import contrib

from adamlab.optim import _checks
from adamlab.optim.chain import _scale_leaves, with_learning_rate
from adamlab.optim.table import eps_multipliers, is_entry
from adamlab.optim.stable_adam import scale_by_stable_adam

SHAPES = ("spectral", "rms", "none")
RMS_MATCH = 0.2  # Moonshot's update RMS: AdamW's typical one (Liu et al. 2025)


def muon_dimension_numbers(table: Any) -> Any:
  """Which leaves Muon orthogonalizes, and how: one entry per leaf of the table.

  Args:
    table: a table from `parametrize`.

  Returns:
    A tree like the params: `optax.contrib.MuonDimensionNumbers` (the leaf's fan-in
    axes as the reduction axes, its fan-out axes as the output axes) for every hidden
    leaf of rank >= 2, None for every other leaf (the Adam branch).

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.zeros((16, n)), "w_hid": jnp.zeros((n, n)),
    ...                  "w_out": jnp.zeros((n, 10))}
    >>> table = optim.parametrize(base=mlp(64), target=mlp(256), optimizer="muon")
    >>> dims = optim.muon_dimension_numbers(table)
    >>> dims["w_hid"].reduction_axis, dims["w_hid"].output_axis, dims["w_in"]
    ((0,), (1,), None)
  """

  def one(s):
    if s.role != "hidden" or s.kind == "vector":
      return None
    # Layer axes of a stacked leaf are neither: optax orthogonalizes each layer apart.
    skip = set(s.fan_in_axes) | set(s.layer_axes)
    fan_out = tuple(i for i in range(len(s.shape)) if i not in skip)
    return contrib.MuonDimensionNumbers(reduction_axis=s.fan_in_axes, output_axis=fan_out)

  return jax.tree.map(one, table, is_leaf=is_entry)


def muon(
  learning_rate: optax.ScalarOrSchedule,
  beta: float = 0.95,
  ns_steps: int = 5,
  eps: float = 1e-8,
  *,
  parametrization: Any,
  shape: str = "spectral",
  nesterov: bool = True,
  adam_b1: float = 0.9,
  adam_b2: float = 0.999,
  adam_clip_threshold: Any = None,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask: Any = None,
  weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  r"""Muon on the hidden matrices, Adam on the rest, with the table's multipliers.

  For a hidden leaf W (fan-in axes flattened into rows, fan-out into columns), with
  momentum :math:`\mu_t = \beta \mu_{t-1} + (1 - \beta) g_t` (bias-corrected; Nesterov
  by default) and NS the quintic Newton-Schulz iteration of the Frobenius-normalized
  momentum (singular values pushed to about 1):

  .. math::

    W \leftarrow W - \eta_t k \, (s \, \mathrm{NS}(\hat\mu_t) + \lambda W)

  with k the leaf's learning-rate multiplier from the table and s the shape factor:
  "spectral" sqrt(max(1, fan_out / fan_in)) (Jordan's Muon; the spectral condition
  of Yang, Simon and Bernstein), "rms" 0.2 sqrt(max(fan_in, fan_out)) (Moonshot's
  RMS matching to AdamW), "none" 1. Every other leaf takes Adam's direction
  (`scale_by_stable_adam`, clipping off unless `adam_clip_threshold`), with the
  table's eps multipliers, the same k, lr and decay.

  Under muP the table's Muon exponent is c = -a for hidden leaves ("spectral" and
  "none" keep their factor constant in width), and c = 1/2 - a with "rms", whose
  factor grows as sqrt(m): so the table must be built for the shape,
  `parametrize(optimizer="muon")` or `"muon_rms"` (see `exponents`).

  Defaults follow `optax.contrib.muon` (beta 0.95, 5 steps, eps 1e-8, Nesterov, Adam
  b1 0.9 and b2 0.999, no decay). Differences: the table, not the rank, decides
  which leaves Muon takes (optax's rule sends every 2-D leaf there, embeddings and
  readout too); `weight_decay` decays every leaf of `mask` (optax: the Muon leaves
  only); the Adam branch is Adam (optax's is NAdam) and shares `eps`.

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    beta: Muon's momentum decay, in [0, 1).
    ns_steps: Newton-Schulz iterations, an integer >= 1; static (under
      `optax.inject_hyperparams`, name it in `static_args`).
    eps: added to the Frobenius norm before NS, and Adam's eps (times the table's
      eps multiplier per leaf), >= 0.
    parametrization: a table from `parametrize(optimizer="muon")` (or "muon_rms" for
      shape "rms"); required: its roles decide which leaves Muon takes.
    shape: "spectral", "rms" or "none".
    nesterov: Nesterov momentum for Muon.
    adam_b1: the Adam branch's first-moment decay, in [0, 1).
    adam_b2: the Adam branch's second-moment decay, in [0, 1).
    adam_clip_threshold: StableAdamW's RMS_t clip on the Adam branch, > 0, or None.
    weight_decay: lambda >= 0, or a schedule.
    mask: which leaves decay (None: all).
    weight_decay_mode: "coupled", "width_scaled" or "independent" (`with_learning_rate`).

  Returns:
    An `optax.GradientTransformation`.

  Raises:
    ValueError: naming the argument, for any value out of its range, or a table
      built for another optimizer family.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.ones((4, n)), "w_hid": jnp.ones((n, n)),
    ...                  "w_out": jnp.ones((n, 2))}
    >>> table = optim.parametrize(base=mlp(8), target=mlp(32), optimizer="muon")
    >>> tx = optim.muon(0.02, parametrization=table)
    >>> params = mlp(32)
    >>> grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(0), p.shape),
    ...                      params)
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> s = jnp.linalg.svd(updates["w_hid"], compute_uv=False)  # NS: all near 0.02
    >>> bool(jnp.all((s > 0.01) & (s < 0.03)))
    True

  References:
    Jordan et al. 2024, Muon: An optimizer for hidden layers in neural networks,
    https://kellerjordan.github.io/posts/muon/.
    Liu et al. 2025, Muon is Scalable for LLM Training, arXiv:2502.16982.
    Yang, Simon and Bernstein 2023, A Spectral Condition for Feature Learning,
    arXiv:2310.17813.
  """
  check_arguments(learning_rate, beta, ns_steps, eps, shape, adam_b1, adam_b2, adam_clip_threshold)
  _check_table(parametrization, "muon_rms" if shape == "rms" else "muon", shape)
  dims = muon_dimension_numbers(parametrization)
  labels = jax.tree.map(lambda d: "adam" if d is None else "muon", dims, is_leaf=_is_dims)
  branch = optax.chain(
    contrib.scale_by_muon(
      ns_steps=ns_steps,
      beta=beta,
      eps=eps,
      nesterov=nesterov,
      weight_dimension_numbers=lambda _: _masked_to(dims, labels, "muon"),
    ),
    _scale_leaves(shape_factors(parametrization, shape)),
  )
  adam = scale_by_stable_adam(
    adam_b1,
    adam_b2,
    eps,
    clip_threshold=adam_clip_threshold,
    eps_scale=eps_multipliers(parametrization),
  )
  direction = optax.partition({"muon": branch, "adam": adam}, labels)
  return with_learning_rate(
    direction,
    learning_rate,
    weight_decay,
    mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )


def check_arguments(
  learning_rate, beta, ns_steps, eps, shape, adam_b1, adam_b2, adam_clip_threshold
) -> None:
  """`muon`'s checks of its arguments besides the table (ValueError naming one)."""
  _checks.scalar_or_schedule("learning_rate", learning_rate)
  _checks.decay_rate("beta", beta)
  _checks.integer("ns_steps", ns_steps, 1)
  _checks.non_negative("eps", eps)
  _checks.one_of("shape", shape, SHAPES)
  _checks.decay_rate("adam_b1", adam_b1)
  _checks.decay_rate("adam_b2", adam_b2)
  if adam_clip_threshold is not None:
    _checks.positive("adam_clip_threshold", adam_clip_threshold)


def _check_table(table, family: str, shape: str) -> None:
  if table is None:
    _checks.fail(
      "parametrization", None, "a table from parametrize(optimizer='muon'): it says which leaves"
    )
  leaves = jax.tree.leaves(table, is_leaf=is_entry)
  families = {s.optimizer for s in leaves}
  if families != {family}:
    _checks.fail(
      "parametrization",
      f"a table for optimizer {sorted(families)}",
      f"a table built with parametrize(optimizer={family!r}) for shape {shape!r}",
    )
  if not any(s.role == "hidden" and len(s.shape) >= 2 for s in leaves):
    # At the base width nothing grows: every leaf is "fixed", and Muon would get none.
    _checks.fail(
      "parametrization",
      "a table with no hidden matrix",
      "a table with hidden leaves; at the base width itself pass parametrize(delta=) "
      "(shapes at another width) so the roles are known",
    )


def shape_factors(table: Any, shape: str = "spectral") -> Any:
  """Muon's shape factor s of every leaf (1.0 for the Adam branch's leaves).

  Args:
    table: a table from `parametrize`.
    shape: "spectral": sqrt(max(1, fan_out / fan_in)); "rms": 0.2 sqrt(max(fan_in,
      fan_out)); "none": 1. fan_in and fan_out: the products of the leaf's fan-in and
      fan-out axes.

  Returns:
    A tree like the params of Python floats.

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.zeros((16, n)), "up": jnp.zeros((n, 4 * n)),
    ...                  "down": jnp.zeros((4 * n, n)), "w_out": jnp.zeros((n, 10))}
    >>> table = optim.parametrize(base=mlp(64), target=mlp(256), optimizer="muon")
    >>> optim.shape_factors(table)
    {'down': 1.0, 'up': 2.0, 'w_in': 1.0, 'w_out': 1.0}
  """
  _checks.one_of("shape", shape, SHAPES)

  def one(s, d):
    if d is None or shape == "none":
      return 1.0
    fan_in = math.prod(s.shape[i] for i in d.reduction_axis)
    fan_out = math.prod(s.shape[i] for i in d.output_axis)
    if shape == "spectral":
      return math.sqrt(max(1.0, fan_out / fan_in))
    return RMS_MATCH * math.sqrt(max(fan_in, fan_out))

  return jax.tree.map(one, table, muon_dimension_numbers(table), is_leaf=is_entry)


def _is_dims(x) -> bool:
  return x is None or isinstance(x, contrib.MuonDimensionNumbers)


def _masked_to(tree, labels, label):
  """`tree` with optax.MaskedNode where `labels` is not `label`: the tree one branch of
  `optax.partition` sees."""
  return jax.tree.map(
    lambda x, lab: x if lab == label else optax.MaskedNode(), tree, labels, is_leaf=_is_dims
  )
