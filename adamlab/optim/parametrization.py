"""Width and depth parametrizations: one per-leaf table for models and optimizers.

A parametrization says how three numbers of every weight scale with the width n
(Everett et al. 2024): a forward multiplier n^-a, an init std n^-b and a learning
rate n^-c. They differ by layer role:

  input   finite fan-in, growing fan-out: embeddings, patch embeddings, biases, norms
  hidden  fan-in and fan-out both grow
  output  growing fan-in, finite fan-out: the readout
  fixed   nothing grows (a vocabulary-sized bias, a scalar): never rescaled

The roles come from comparing each leaf's shape at a base width with its shape at
the target width (the "base shapes" idea of microsoft/mup), so no model needs a
hand-written table. All exponents are applied to the width ratio m = n / n_base, so
at the base width every multiplier is exactly 1 and every parametrization is the
standard-parametrization model.

Learning-rate exponents are derived, not tabulated: a layer's effective weight moves
by n^-(a + c) per coordinate under Adam (n^-(a + c + g) under SGD, whose step carries
the gradient scale n^-g; n^-(a + b + c) under Adafactor, whose step carries the
parameter scale n^-b). Each layer's contribution to its output is then summed over
its fan-in, which is finite for inputs and grows for the others: by n under full
alignment, by sqrt(n) under none. Asking for Theta(1) contributions gives
a + c = 0, 1, 1 (full) or 0, 1/2, 1/2 (none) for Adam, and the rest follows, with
one more rule for SGD and Adafactor (see `exponents`). This reproduces the tables
of Everett et al. and of Tensor Programs V (tests check it).

Depth is optional and derived the same way (`depth_exponents`). A residual network
adds L branches, x + m_L^-alpha F_l(x), with m_L = depth / base_depth. The branch
multiplier m_L^-alpha (the model applies it, `branch_multiplier`) also multiplies the
gradient of every leaf inside the branch, so Adam's eps must shrink by m_L^-alpha
there. Under Adam a block leaf with learning rate m_L^-c moves its branch's output by
m_L^-(alpha + c); SGD's step carries the gradient, one more m_L^-alpha; Adafactor's
carries the parameter scale, which does not depend on depth. The L blocks' updates
add up (aligned), and asking for a Theta(1) total, each block Theta(1/L), gives
c = 1 - alpha (Adam, Adafactor) and 1 - 2 alpha (SGD). Embeddings, readout and norms
outside the blocks see no depth, and no init does. This is CompleteP at alpha = 1
(Dey et al. 2025: branches m_L^-alpha, hidden and LayerNorm lr m_L^(alpha - 1), hidden
eps / (m_d m_L^alpha)) and Depth-muP at alpha = 1/2 (Yang et al. 2023, Tensor Programs
VI: Adam lr / sqrt(L), SGD lr constant; Bordelon et al. 2023). Embedding, readout
and final norm keep their width eps, since their gradients pass through no branch
multiplier: the CompleteP paper's rule, which its public code (nanoGPT-mup) now
follows; its first version divided one global eps by m_d m_L^alpha, these leaves' too.
The depth rule assumes aligned blocks whatever `alignment` says of width: that is the
case both papers' tables are. At depth == base_depth nothing changes.
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import optax

from adamlab.optim import _checks, _roles, _usage

ROLES = ("input", "hidden", "output", "fixed")
PARAMETRIZATIONS = ("sp", "ntk", "mup", "mfp", "mup_tp5")
FAMILIES = ("adam", "sgd", "adafactor", "muon", "muon_rms")
ALIGNMENTS = ("full", "none")

# Multiplier (a) and init (b) exponents per role (input, hidden, output).
# sp, ntk, mup, mfp: Everett et al. 2024. mup_tp5: the muP table of Tensor
# Programs V (no multipliers; init var 1/fan_in, 1/fan_in, 1/fan_in^2) -- the same
# model as Everett's mup up to the a/b/c symmetry.
_AB = {
  "sp": ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5)),
  "ntk": ((0.0, 0.5, 0.5), (0.0, 0.0, 0.0)),
  "mup": ((-0.5, 0.0, 0.5), (0.5, 0.5, 0.5)),
  "mfp": ((0.0, 0.5, 1.0), (0.0, 0.0, 0.0)),
  "mup_tp5": ((0.0, 0.0, 0.0), (0.0, 0.5, 1.0)),
}
# Adam's a + c per role for Theta(1) updates: the fan-in sum grows as n (aligned)
# or sqrt(n) (not aligned) for hidden and output layers, not at all for inputs.
_TARGET = {"full": (0.0, 1.0, 1.0), "none": (0.0, 0.5, 0.5)}


class Exponents(NamedTuple):
  """Width exponents of one role: each number scales as m^-exponent, m = n / n_base.

  Attributes:
    a: forward multiplier exponent.
    b: init std exponent.
    c: learning-rate exponent.
    g: gradient-scale exponent at init (Adam's eps must follow it).
  """

  a: float
  b: float
  c: float
  g: float


def exponents(parametrization: str, optimizer: str = "adam", alignment: str = "full") -> dict:
  """Width exponents per role for a parametrization, optimizer family and alignment.

  Adam moves a layer's effective weight by m^-(a + c) per coordinate; SGD's step also
  carries the gradient scale m^-g, Adafactor's the parameter scale m^-b. Summed over
  a fan-in that grows as m (full alignment) or sqrt(m) (none), Theta(1) changes of
  every layer's output give the learning-rate exponent c of each role.

  Args:
    parametrization: one of "sp", "ntk", "mup", "mfp", "mup_tp5".
    optimizer: the family, "adam" (Adam, AdamW, StableAdamW, Adam-atan2, Lion),
      "sgd", "adafactor", or "muon" (hidden matrices orthogonalized, the rest Adam;
      "muon_rms" with Moonshot's RMS-matched shape factor).
    alignment: "full" or "none", the assumption behind the learning-rate exponents.

  Muon's hidden step is the orthogonalized momentum O times a shape factor s and the
  learning rate: every singular value of O is about 1, so with the spectral factor
  s = sqrt(max(1, fan_out / fan_in)) the step's spectral norm is eta s m^-a, and it
  moves an input x (whose norm grows as sqrt(n)) by at most that times |x|, a change
  of Theta(eta s m^-a) per output coordinate. The spectral condition of Yang, Simon
  and Bernstein (|dW| of order sqrt(fan_out / fan_in), constant for hidden layers)
  asks for Theta(1): c = -a, whatever the alignment (an orthogonal step moves every
  direction of its span by the same amount). s is constant in width for hidden
  layers, so the same holds with no shape factor; Moonshot's RMS-matched factor
  0.2 sqrt(max(fan_in, fan_out)) grows as m^(1/2) and needs c = 1/2 - a instead:
  the family "muon_rms". Embeddings, readout and vectors take the Adam branch, and
  Adam's exponents.

  Returns:
    A dict {role: Exponents} for the roles "input", "hidden", "output", "fixed".

  Example:
    >>> from adamlab import optim
    >>> e = optim.exponents("mup")
    >>> e["hidden"].c, e["output"].a, e["output"].c
    (1.0, 0.5, 0.5)

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872 (Tables 1 and 2).
    Yang et al. 2022, Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
    Hyperparameter Transfer, arXiv:2203.03466 (Table 3).
    Yang, Simon and Bernstein 2023, A Spectral Condition for Feature Learning,
    arXiv:2310.17813 (Muon's hidden exponent).
  """
  _checks.one_of("parametrization", parametrization, PARAMETRIZATIONS)
  _checks.one_of("optimizer", optimizer, FAMILIES)
  _checks.one_of("alignment", alignment, ALIGNMENTS)
  a, b = _AB[parametrization]
  # Backward pass: the readout's effective weights have scale n^-(a_out + b_out), and
  # every hidden layer has a + b = 1/2, which keeps the backward signal's scale.
  back = a[2] + b[2]
  g = (a[0] + back, a[1] + back, a[2])
  target = list(_TARGET[alignment])
  if optimizer in ("muon", "muon_rms"):
    target[1] = 0.0 if optimizer == "muon" else 0.5  # the spectral condition (see above)
  if optimizer in ("sgd", "adafactor"):
    # SGD's step carries the gradient scale and Adafactor's the parameter scale, so a
    # readout that outgrew its init would change the backward signal (or its own
    # scale) and with it every other layer's step: keep it at its init scale.
    target[2] = max(target[2], a[2] + b[2])
  out = {}
  for i, role in enumerate(("input", "hidden", "output")):
    extra = {"sgd": g[i], "adafactor": b[i]}.get(optimizer, 0.0)
    out[role] = Exponents(a[i], b[i], target[i] - a[i] - extra, g[i])
  out["fixed"] = Exponents(0.0, 0.0, 0.0, 0.0)
  return out


class DepthExponents(NamedTuple):
  """Depth exponents of the leaves inside residual branches, powers of m_L^-1.

  Attributes:
    alpha: residual branch multiplier m_L^-alpha.
    c: learning rate m_L^-c.
    g: gradient scale m_L^-g (Adam's eps must follow it).
  """

  alpha: float
  c: float
  g: float


def depth_exponents(alpha: float, optimizer: str = "adam") -> DepthExponents:
  """Depth exponents of the leaves inside residual branches (block leaves).

  A residual network adds L branches x + m_L^-alpha F_l(x), m_L = L / L_base. A block
  update reaches the residual stream as m_L^-(alpha + c + extra), extra being what
  the step carries besides the learning rate (0 for Adam and Adafactor, the gradient
  scale alpha for SGD). The L updates add up aligned, so Theta(1) in total asks
  1 - alpha - c - extra = 0: Adam lr m_L^(alpha - 1), SGD lr m_L^(2 alpha - 1).

  Args:
    alpha: 0 is off (standard practice), 1/2 Depth-muP, 1 CompleteP; in [0, 1].
    optimizer: the family, "adam", "sgd" or "adafactor".

  Returns:
    A `DepthExponents`.

  Example:
    >>> from adamlab import optim
    >>> optim.depth_exponents(1.0)
    DepthExponents(alpha=1.0, c=0.0, g=1.0)

  References:
    Dey et al. 2025, Don't be lazy: CompleteP enables compute-efficient deep
    transformers, arXiv:2505.01618.
    Yang et al. 2023, Tensor Programs VI: Feature Learning in Infinite-Depth Neural
    Networks, arXiv:2310.02244.
  """
  _check_alpha(alpha)
  _checks.one_of("optimizer", optimizer, FAMILIES)
  if alpha == 0:
    return DepthExponents(0.0, 0.0, 0.0)
  # Muon's step, like Adam's, does not carry the gradient's scale.
  extra = alpha if optimizer == "sgd" else 0.0
  return DepthExponents(float(alpha), 1.0 - alpha - extra, float(alpha))


def branch_multiplier(depth: float, base_depth: float, alpha: float) -> float:
  """m_L^-alpha with m_L = depth / base_depth: what a residual branch is multiplied by.

  Args:
    depth: residual blocks of the model.
    base_depth: residual blocks at the base depth; > 0.
    alpha: the branch exponent, in [0, 1].

  Returns:
    A float, exactly 1.0 at the base depth.

  Example:
    >>> from adamlab import optim
    >>> optim.branch_multiplier(16, 4, 0.5)
    0.5

  References:
    Dey et al. 2025, arXiv:2505.01618; Yang et al. 2023, arXiv:2310.02244.
  """
  _check_alpha(alpha)
  return _depth_ratio(depth, base_depth) ** -alpha


def _check_alpha(alpha) -> None:
  _checks.number(
    "alpha", alpha, 0.0, 1.0, allowed="a number in [0, 1] (1/2 Depth-muP, 1 CompleteP)"
  )


def _depth_ratio(depth, base_depth) -> float:
  _checks.positive("depth", depth)
  _checks.positive("base_depth", base_depth)
  return depth / base_depth


def _depth_rule(depth, base_depth, alpha, optimizer):
  """(m_L, DepthExponents), or None when no depth argument is given."""
  if depth is None and base_depth is None and alpha is None:
    return None
  if alpha is None:
    _checks.fail("alpha", alpha, "a number in [0, 1] when depth is given")
  return _depth_ratio(depth, base_depth), depth_exponents(alpha, optimizer)


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
  rule = _depth_rule(depth, base_depth, alpha, optimizer)
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
      shape=_shape(t),
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

  is_role = lambda x: isinstance(x, _roles.LeafRole)
  if rule is not None and rule[0] != 1.0:
    _check_some_block(roles, in_block, is_role, depth)
  trees = (roles, target) if stds is None else (roles, target, stds)
  return jax.tree_util.tree_map_with_path(leaf, *trees, is_leaf=is_role)


def _roles_of(base, target, delta, fan_in_axes, apply):
  """A tree of `_roles.LeafRole`: width axes from base against delta (or target),
  ratios from base against target, fan-in axes from apply's trace or the shape rule."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(target)
  names = [_roles.leaf_name(p) for p, _ in paths]
  uses = [None] * len(paths)
  if apply is not None:
    if not callable(apply):
      _checks.fail("apply", apply, "a function f(params) -> outputs (the model's forward)")
    uses = _usage.read_uses(apply, target, names)
  bases = treedef.flatten_up_to(base)
  probes = [None] * len(paths) if delta is None else treedef.flatten_up_to(delta)
  roles = [
    _roles.role(p, _shape(b), _shape(t), None if d is None else _shape(d), fan_in_axes, u)
    for (p, t), b, d, u in zip(paths, bases, probes, uses)
  ]
  return jax.tree.unflatten(treedef, roles)


def _check_stacked_depth(path, r, t, depth) -> None:
  """A leaf stacked along one layer axis holds `depth` layers, or depth is wrong."""
  if depth is None or len(r.layer_axes) != 1:
    return
  layers = _shape(t)[r.layer_axes[0]]
  if layers != depth:
    _checks.fail_described(
      _roles.leaf_name(path),
      f"a stack of {layers} layers (axis {r.layer_axes[0]} of {_shape(t)})",
      f"a stack of depth = {depth!r} layers: pass the depth the stack holds",
    )


def _shape(x) -> tuple:
  return tuple(getattr(x, "shape", ()))


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
  is_role = lambda x: isinstance(x, _roles.LeafRole)
  ratios = {r.width_mult for r in jax.tree.leaves(roles, is_leaf=is_role) if r.role == "output"}
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


def _check_some_block(roles, in_block, is_role, depth) -> None:
  # A predicate that matches nothing would silently leave depth out of the table.
  paths = jax.tree_util.tree_flatten_with_path(roles, is_leaf=is_role)[0]
  if not any(in_block(_roles.path_names(path)) or r.layer_axes for path, r in paths):
    _checks.fail(
      "in_block",
      in_block,
      f"a predicate matching the leaves inside residual "
      f"branches (depth = {depth!r}, but it matched no leaf; default: a "
      "'blocks' key in the path)",
    )


def _is_leaf(x) -> bool:
  return isinstance(x, (LeafScale, optax.MaskedNode)) or x is None


def check_same_tree(tree: Any, other: Any, name: str, other_name: str) -> None:
  """ValueError naming the leaves one tree has and the other lacks."""
  paths = lambda t: {
    jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(t, is_leaf=_is_leaf)[0]
  }
  mine, theirs = paths(tree), paths(other)
  if mine == theirs:
    if jax.tree.structure(tree, is_leaf=_is_leaf) != jax.tree.structure(  # type: ignore[operator]
      other, is_leaf=_is_leaf
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
    if _shape(p) != s.shape:
      _checks.fail_described(
        _roles.leaf_name(path),
        f"of shape {_shape(p)}",
        f"of shape {s.shape}, the target shape the table was built for (a table of "
        "another width? build it with target=these params)",
      )

  jax.tree_util.tree_map_with_path(one, table, params, is_leaf=_is_leaf)


def _masked_like(values: Any, updates: Any) -> Any:
  """A tree of per-leaf values shaped like `updates`: MaskedNode where `optax.masked`
  left a leaf out, so the two map together."""
  masked = lambda x: isinstance(x, optax.MaskedNode)
  return jax.tree.map(lambda v, u: u if masked(u) else v, values, updates, is_leaf=masked)


def _field(table, name):
  if table is None:
    return None
  is_scale = lambda x: isinstance(x, LeafScale)  # a pytree node with no children
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
