"""The table's entry, `LeafScale`, and what reads a table: its checks against params and
its fields as trees (`lr_multipliers`, ...). `parametrize` builds tables."""

import dataclasses
from typing import Any

import jax
import optax

from adamlab.optim import _checks, _roles


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class LeafScale:
  """Everything width- and depth-dependent about one leaf: an entry of the table.

  A table is a tree shaped like the params with one LeafScale per leaf. LeafScale is
  a pytree node with no children (every field is static aux data, hashable), so a
  table is a pytree with no array leaves: it passes through `jax.jit`, `vmap` and
  `grad` as an ordinary argument, and jit retraces only for a table of other
  numbers. A dict table cannot be a `static_argnums` argument (a dict is not
  hashable): pass it as an ordinary one, or close over it. To map over a table's
  entries, pass `is_leaf=lambda x: isinstance(x, LeafScale)` to `jax.tree.map`,
  `jax.tree.leaves` and the like; without it they see no leaves.

  Attributes:
    role: "input", "hidden", "output" or "fixed".
    width_mult: m = n / n_base of the leaf's growing fan (1.0 for fixed leaves).
    multiplier: forward multiplier: the model uses multiplier * stored value.
    init_std: init std of the stored value (matrices).
    lr: learning-rate multiplier, width times depth.
    eps: Adam epsilon multiplier, width times depth.
    decay_width_mult: m^c, cancelling the width part of lr ("width_scaled" decay).
    branch_multiplier: m_L^-alpha inside a residual branch, else 1 (the model
      multiplies the branch's output by it once, not each leaf).
    readout_multiplier: the multiplier this leaf would have as the readout: a tied
      embedding's use as the output layer.
    shape: the target shape the table was built for (`init` checks it).
    fan_in_axes: the leaf's fan-in axes (the others, less layer_axes, are fan-out):
      what Muon contracts when it orthogonalizes a multi-axis kernel.
    layer_axes: axes of stacked layers (sliced by a scan, batched by a vmap): neither
      fan-in nor width; every number is the single layer's.
    kind: "matrix", "embedding" (looked up) or "vector" (gains, biases: `init_params`
      keeps their values).
    optimizer: the family the table was built for (`parametrize`'s `optimizer`).
  """

  role: str
  width_mult: float
  multiplier: float
  init_std: float
  lr: float
  eps: float
  decay_width_mult: float = 1.0
  branch_multiplier: float = 1.0
  readout_multiplier: float = 1.0
  shape: tuple = ()
  fan_in_axes: tuple = ()
  layer_axes: tuple = ()
  kind: str = "matrix"
  optimizer: str = "adam"


def is_scale(x) -> bool:
  """A table's entry (LeafScale is a pytree node with no children: pass this as
  `is_leaf` to map over a table)."""
  return isinstance(x, LeafScale)


def shape_of(x) -> tuple:
  """A leaf's shape: an array's or a ShapeDtypeStruct's; () for a Python number."""
  return tuple(getattr(x, "shape", ()))


def is_entry(x) -> bool:
  """A table's leaf: a LeafScale, or where a mask left a leaf out."""
  return isinstance(x, (LeafScale, optax.MaskedNode)) or x is None


def check_same_tree(tree: Any, other: Any, name: str, other_name: str) -> None:
  """ValueError naming the leaves one tree has and the other lacks."""
  paths = lambda t: {
    jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(t, is_leaf=is_entry)[0]
  }
  mine, theirs = paths(tree), paths(other)
  if mine == theirs:
    if jax.tree.structure(tree, is_leaf=is_entry) != jax.tree.structure(  # type: ignore[operator]
      other, is_leaf=is_entry
    ):
      _checks.fail_described(
        other_name,
        "a tree of other node types",
        f"the structure of {name} (the same containers, not only the same keys)",
      )
    return
  missing, extra = sorted(mine - theirs), sorted(theirs - mine)
  show = lambda keys: ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
  _checks.fail_described(
    other_name,
    f"a tree lacking {show(missing)}" if missing else f"a tree with extra leaves {show(extra)}",
    f"the structure of {name}"
    + (f" (it also has extra {show(extra)})" if missing and extra else ""),
  )


def check_params(table: Any, params: Any) -> None:
  """ValueError unless params have the structure and shapes the table was built for."""
  if table is None:
    return
  check_same_tree(table, params, "the table", "params")

  def one(path, s, p):
    if isinstance(p, optax.MaskedNode) or p is None:
      return
    if not isinstance(s, LeafScale):
      _checks.fail(
        "parametrization",
        type(s).__name__,
        "a table from optim.parametrize (one LeafScale per leaf)",
      )
    if shape_of(p) != s.shape:
      _checks.fail_described(
        _roles.leaf_name(path),
        f"of shape {shape_of(p)}",
        f"of shape {s.shape}, the target shape the table was built for (a table of "
        "another width? build it with target=these params)",
      )

  jax.tree_util.tree_map_with_path(one, table, params, is_leaf=is_entry)


def masked_like(values: Any, updates: Any) -> Any:
  """A tree of per-leaf values shaped like `updates`: MaskedNode where `optax.masked`
  left a leaf out, so the two map together."""
  masked = lambda x: isinstance(x, optax.MaskedNode)
  return jax.tree.map(lambda v, u: u if masked(u) else v, values, updates, is_leaf=masked)


def _field(table, name):
  if table is None:
    return None
  return jax.tree.map(lambda s: getattr(s, name), table, is_leaf=is_scale)


def _accessor_doc(what: str, field: str, example: str, value: str) -> str:
  """The docstring of a table accessor (one LeafScale field per leaf)."""
  return f"""Per-leaf {what}.

  Args:
    table: a table from `parametrize`, or None.

  Returns:
    A tree like the table of Python floats (each leaf's `LeafScale.{field}`), or
    None for None.

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {{"w_in": jnp.zeros((16, n)), "w_hid": jnp.zeros((n, n)),
    ...                  "w_out": jnp.zeros((n, 10))}}
    >>> optim.{example}(optim.parametrize(base=mlp(64), target=mlp(256)))
    {value}

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872.
  """


def lr_multipliers(table: Any) -> Any:
  return _field(table, "lr")


lr_multipliers.__doc__ = _accessor_doc(
  """learning-rate multipliers k, which `scale_by_parametrization` applies""",
  "lr",
  "lr_multipliers",
  "{'w_hid': 0.25, 'w_in': 0.5, 'w_out': 0.5}",
)


def eps_multipliers(table: Any) -> Any:
  return _field(table, "eps")


eps_multipliers.__doc__ = _accessor_doc(
  """Adam epsilon multipliers, which the Adam aliases apply to eps""",
  "eps",
  "eps_multipliers",
  "{'w_hid': 0.25, 'w_in': 0.5, 'w_out': 0.5}",
)


def forward_multipliers(table: Any) -> Any:
  return _field(table, "multiplier")


forward_multipliers.__doc__ = _accessor_doc(
  """forward multipliers m^-a, which the model applies to each leaf
  (`apply_multipliers` folds them into the params)""",
  "multiplier",
  "forward_multipliers",
  "{'w_hid': 1.0, 'w_in': 2.0, 'w_out': 0.5}",
)


def init_stds(table: Any) -> Any:
  return _field(table, "init_std")


init_stds.__doc__ = _accessor_doc(
  """init stds sigma_0 m^-b, which `init_params` draws with""",
  "init_std",
  "init_stds",
  "{'w_hid': 0.0625, 'w_in': 0.125, 'w_out': 0.0625}",
)


def decay_width_multipliers(table: Any) -> Any:
  return _field(table, "decay_width_mult")


decay_width_multipliers.__doc__ = _accessor_doc(
  """weight-decay width multipliers m^c (the inverse of the width part
  of k), which weight_decay_mode="width_scaled" applies""",
  "decay_width_mult",
  "decay_width_multipliers",
  "{'w_hid': 4.0, 'w_in': 2.0, 'w_out': 2.0}",
)
