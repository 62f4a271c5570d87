"""The per-leaf table that a model (init, multipliers) and an optimizer share.

`parametrize` gives every leaf a role from which of its axes grow between a base and a
target width and how the model uses it (from shapes, or from the traced forward with
`apply`), then its numbers from the role's exponents (`exponents`, `depth_exponents`).
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import jax

from adamlab.optim import _checks, _roles, _usage
from adamlab.optim.theory import ROLES, Exponents, depth_rule, exponents
from adamlab.optim.table import LeafScale, check_same_tree, shape_of


def in_blocks(path: tuple) -> bool:
  """The default `in_block` of `parametrize`: is a key of the path "blocks"?

  Args:
    path: a leaf's path as plain keys (dict keys, attribute names, indices).

  Returns:
    True for a leaf under `params["blocks"][i]...`.

  Example:
    >>> from adamlab import optim
    >>> optim.in_blocks(("blocks", 0, "mlp", "kernel")), optim.in_blocks(("embed",))
    (True, False)
  """
  return "blocks" in path


def parametrize(
  *,
  base: Any,
  target: Any,
  parametrization: str = "mup",
  optimizer: str = "adam",
  alignment: str = "full",
  per_layer_lr: bool = True,
  scale_eps: bool = True,
  constants: Optional[Mapping[str, Mapping[str, float]]] = None,
  base_std: Any = None,
  depth: Optional[float] = None,
  base_depth: Optional[float] = None,
  alpha: Optional[float] = None,
  in_block: Optional[Callable[[tuple], bool]] = None,
  fan_in_axes: Optional[Callable[[tuple, tuple], Optional[Sequence[int]]]] = None,
  allow_narrower: bool = False,
  delta: Any = None,
  apply: Optional[Callable[[Any], Any]] = None,
) -> Any:
  r"""The per-leaf table that a model (init, multipliers) and an optimizer share.

  Each leaf's role comes from comparing its shape at the base width with its shape
  at the target width (dimensions that differ are width dimensions, all grown by one
  ratio m); its numbers are then, for the role's `exponents` (a, b, c, g),

  .. math::

    \text{multiplier} = m^{-a}, \quad \text{init\_std} = \sigma_0 m^{-b}, \quad
    \text{lr} = m^{-c} m_L^{-c_L}, \quad \text{eps} = m^{-g} m_L^{-g_L},

  with sigma_0 the std at the base width and the depth factors m_L only for leaves
  inside residual branches when `depth` is given. At the base width every number is
  1 (init: sigma_0), so every parametrization is the standard model there.

  A role needs the leaf's fan-in axes. A matrix's are its first axis (Flax, Haiku,
  optax: (in, out)). A kernel of rank >= 3 splits into fan-in and fan-out axes with
  at most one width axis on each side; where several splits qualify, the one whose
  single-axis side is the product of the other at the base wins, so linen attention's
  (d, heads, head_dim) and (heads, head_dim, d) come out hidden whether the heads or
  head_dim grow; then the last-axis split ((h, w, in, out) convolutions). Vectors and
  leaves named "bias" or "b" have a fan-in of one. Layouts no rule can know, such as
  Equinox's (out, in), take `fan_in_axes`.

  Args:
    base: params, or shapes (`jax.eval_shape`), at the base width; None: at the
      target (every multiplier 1). Keyword-only, as is everything here.
    target: params or shapes at the target width, the same tree as `base`.
    parametrization: one of "sp", "ntk", "mup", "mfp", "mup_tp5".
    optimizer: the optimizer family: "adam" (AdamW, StableAdamW, Adam-atan2, Lion),
      "sgd", "adafactor", "muon" or "muon_rms" (`muon`'s shape factors).
    alignment: "full" or "none", the assumption behind the learning-rate exponents.
    per_layer_lr: False keeps one global learning rate (c = 0), as in plain SP.
    scale_eps: shrink Adam's eps with each role's gradient scale (Adam family, and
      Muon's Adam branch).
    constants: per-role constant factors, e.g. {"output": {"multiplier": 0.5}};
      keys: multiplier, init_std, lr, eps.
    base_std: std at the base width, > 0: a float or a tree like the params.
      Default 1 / sqrt(fan-in at the base) for matrices, 1 for vectors.
    depth: residual blocks of the target; with `base_depth` and `alpha`, the depth
      rule of `depth_exponents` (both trees hold the target's blocks).
    base_depth: residual blocks at the base depth.
    alpha: branch exponent in [0, 1]: 1/2 Depth-muP, 1 CompleteP.
    in_block: predicate on a leaf's path (plain keys): inside a residual branch?
      Default `in_blocks` (a "blocks" key).
    fan_in_axes: per-leaf override, (path, shape) -> the fan-in axes of that leaf, or
      None for the rule. Equinox's Linear stores (out, in): return (1,) for it.
    allow_narrower: a target narrower than the base is an error (base and target
      swapped?) unless this is True.
    delta: params or shapes at a width other than the base's, the same tree, used
      only to tell which axes are width axes (microsoft/mup's "delta" model). Needed
      when the target is the base width itself: there nothing grows, every leaf
      would be "fixed", and Muon could not tell its hidden matrices. The numbers
      still come from base and target (all 1 at the base width).

  Returns:
    A tree like `target` with one `LeafScale` per leaf.

  Raises:
    ValueError: naming the argument or the leaf, for a bad argument, trees of
      different structure, a rank that differs, a dimension grown by another ratio
      than the width's, a narrower target, or fan-in axes no rule can tell.

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.zeros((16, n)), "w_hid": jnp.zeros((n, n)),
    ...                  "w_out": jnp.zeros((n, 10))}
    >>> table = optim.parametrize(base=mlp(64), target=mlp(256), parametrization="mup")
    >>> [(k, s.role, s.lr) for k, s in table.items()]
    [('w_hid', 'hidden', 0.25), ('w_in', 'input', 0.5), ('w_out', 'output', 0.5)]

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872.
    Yang et al. 2022, Tensor Programs V, arXiv:2203.03466 (base shapes).
    Dey et al. 2025, CompleteP, arXiv:2505.01618.
  """
  if base is None:
    base = target
  exps = exponents(parametrization, optimizer, alignment)
  constants = _checked_constants(constants)
  rule = depth_rule(depth, base_depth, alpha, optimizer)
  check_same_tree(target, base, "target", "base")
  if delta is not None:
    check_same_tree(delta, base, "delta", "base")
  roles = _roles_of(base, target, delta, fan_in_axes, apply)
  _roles.check_widths(roles, allow_narrower)
  stds = _base_stds(base_std, target)
  adam_eps = scale_eps and optimizer in ("adam", "muon", "muon_rms")
  a_out = exps["output"].a
  in_block = in_block or in_blocks
  m_back, sgd = _readout_ratio(roles), optimizer == "sgd"

  def leaf(path, r, t, std=None) -> LeafScale:
    k = constants.get(r.role, {})
    scale = _width_scale(r, exps[r.role], k, std, per_layer_lr, adam_eps, m_back, sgd)
    scale = dataclasses.replace(
      scale,
      shape=shape_of(t),
      readout_multiplier=r.readout_mult**-a_out,
      fan_in_axes=r.fan_in,
      layer_axes=r.layer_axes,
      kind=r.kind,
      optimizer=optimizer,
    )
    if rule is None or not (in_block(_roles.path_names(path)) or r.layer_axes):
      return scale
    _check_stacked_depth(path, r, t, depth)
    return _depth_scale(scale, rule, per_layer_lr, adam_eps)

  if rule is not None and rule[0] != 1.0:
    _check_some_block(roles, in_block, depth)
  trees = (roles, target) if stds is None else (roles, target, stds)
  return jax.tree_util.tree_map_with_path(leaf, *trees, is_leaf=_roles.is_role)


def _roles_of(base, target, delta, fan_in_axes, apply):
  """A tree of `_roles.LeafRole`: width axes from base against delta (or target),
  ratios from base against target, fan-in axes from apply's trace or the shape rule."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(target)
  names = [_roles.leaf_name(p) for p, _ in paths]
  uses = [None] * len(paths)
  if apply is not None:
    if not callable(apply):
      _checks.fail("apply", apply, "a function f(params) -> outputs (the model's forward)")
    facts = _usage.trace(apply, target).facts
    uses = [
      _usage.decide(f, n, _roles.given_fan_in(p, shape_of(t), fan_in_axes))
      for f, n, (p, t) in zip(facts, names, paths)
    ]
  bases = treedef.flatten_up_to(base)
  probes = [None] * len(paths) if delta is None else treedef.flatten_up_to(delta)
  roles = [
    _roles.role(p, shape_of(b), shape_of(t), None if d is None else shape_of(d), fan_in_axes, u)
    for (p, t), b, d, u in zip(paths, bases, probes, uses)
  ]
  return jax.tree.unflatten(treedef, roles)


def _check_stacked_depth(path, r, t, depth) -> None:
  """A leaf stacked along one layer axis holds `depth` layers, or depth is wrong."""
  if depth is None or len(r.layer_axes) != 1:
    return
  layers = shape_of(t)[r.layer_axes[0]]
  if layers != depth:
    _checks.fail_described(
      _roles.leaf_name(path),
      f"a stack of {layers} layers (axis {r.layer_axes[0]} of {shape_of(t)})",
      f"a stack of depth = {depth!r} layers: pass the depth the stack holds",
    )


def _base_stds(base_std, params):
  """None (each leaf's default), or a tree like params: a float is every leaf's."""
  if base_std is None:
    return None
  if not isinstance(base_std, (int, float)):
    check_same_tree(params, base_std, "target", "base_std")
    jax.tree_util.tree_map_with_path(
      lambda p, s: _checks.positive(f"base_std{jax.tree_util.keystr(p)}", s), base_std
    )
    return base_std
  _checks.positive("base_std", base_std)
  return jax.tree.map(lambda _: float(base_std), params)


def _width_scale(r, e: Exponents, k, std, per_layer_lr, adam_eps, m_back, sgd) -> LeafScale:
  """One leaf's width numbers. The gradient's scale m^-g is the leaf's own multiplier
  m^-a times the backward signal's m_back^-(g - a), which the readout sets: so eps,
  and SGD's learning rate (its step carries the gradient), take m_back there."""
  m = r.width_mult
  m_back = m if m_back is None else m_back
  back = e.g - e.a  # the backward signal's exponent (0 at the readout)
  if std is None:
    std = 1.0 if r.base_fan_in == 1 else r.base_fan_in**-0.5
  lr = m**-e.c if not sgd else m ** -(e.c + back) * m_back**back
  return LeafScale(
    role=r.role,
    width_mult=m,
    multiplier=k.get("multiplier", 1.0) * m**-e.a,
    init_std=k.get("init_std", 1.0) * std * m**-e.b,
    lr=k.get("lr", 1.0) * (lr if per_layer_lr else 1.0),
    eps=k.get("eps", 1.0) * (m**-e.a * m_back**-back if adam_eps else 1.0),
    decay_width_mult=1.0 / lr if per_layer_lr else 1.0,
  )


def _readout_ratio(roles) -> Optional[float]:
  """The output leaves' width ratio when they agree (the backward signal's), else None."""
  leaves = jax.tree.leaves(roles, is_leaf=_roles.is_role)
  ratios = {r.width_mult for r in leaves if r.role == "output"}
  return ratios.pop() if len(ratios) == 1 else None


def _depth_scale(scale: LeafScale, rule, per_layer_lr, adam_eps) -> LeafScale:
  """A block leaf's scale: depth's factors times width's (all 1.0 at m_L = 1)."""
  m_depth, d = rule
  return dataclasses.replace(
    scale,
    lr=scale.lr * (m_depth**-d.c if per_layer_lr else 1.0),
    eps=scale.eps * (m_depth**-d.g if adam_eps else 1.0),
    branch_multiplier=m_depth**-d.alpha,
  )


def _checked_constants(constants) -> dict:
  constants = dict(constants or {})
  for role, consts in constants.items():
    _checks.one_of("constants role", role, ROLES)
    for key, value in consts.items():
      _checks.one_of(f"constants[{role!r}] key", key, ("multiplier", "init_std", "lr", "eps"))
      _checks.positive(f"constants[{role!r}][{key!r}]", value)
  return constants


def _check_some_block(roles, in_block, depth) -> None:
  # A predicate that matches nothing would silently leave depth out of the table.
  paths = jax.tree_util.tree_flatten_with_path(roles, is_leaf=_roles.is_role)[0]
  if not any(in_block(_roles.path_names(path)) or r.layer_axes for path, r in paths):
    _checks.fail(
      "in_block",
      in_block,
      f"a predicate matching the leaves inside residual "
      f"branches (depth = {depth!r}, but it matched no leaf; default: a "
      "'blocks' key in the path)",
    )
