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
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from adamlab.errors import ConfigError, check_one_of

ROLES = ("input", "hidden", "output", "fixed")
PARAMETRIZATIONS = ("sp", "ntk", "mup", "mfp", "mup_tp5")
OPTIMIZERS = ("adam", "sgd", "adafactor")
ALIGNMENTS = ("full", "none")
# How an alias adds decoupled weight decay (`with_learning_rate`); `build` adds "timescale".
DECAY_MODES = ("coupled", "independent", "width_scaled")

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
  a: float  # forward multiplier n^-a
  b: float  # init std n^-b
  c: float  # learning rate n^-c
  g: float  # gradient scale n^-g at init (Adam's eps must follow it)


def exponents(parametrization: str, optimizer: str = "adam",
              alignment: str = "full") -> dict:
  """{role: Exponents} for a parametrization, optimizer family and alignment."""
  check_one_of("parametrization", parametrization, PARAMETRIZATIONS)
  check_one_of("optimizer", optimizer, OPTIMIZERS)
  check_one_of("alignment", alignment, ALIGNMENTS)
  a, b = _AB[parametrization]
  # Backward pass: the readout's effective weights have scale n^-(a_out + b_out), and
  # every hidden layer has a + b = 1/2, which keeps the backward signal's scale.
  back = a[2] + b[2]
  g = (a[0] + back, a[1] + back, a[2])
  target = list(_TARGET[alignment])
  if optimizer != "adam":
    # SGD's step carries the gradient scale and Adafactor's the parameter scale, so a
    # readout that outgrew its init would change the backward signal (or its own
    # scale) and with it every other layer's step: keep it at its init scale.
    target[2] = max(target[2], a[2] + b[2])
  out = {}
  for i, role in enumerate(("input", "hidden", "output")):
    extra = {"adam": 0.0, "sgd": g[i], "adafactor": b[i]}[optimizer]
    out[role] = Exponents(a[i], b[i], target[i] - a[i] - extra, g[i])
  out["fixed"] = Exponents(0.0, 0.0, 0.0, 0.0)
  return out


class DepthExponents(NamedTuple):
  alpha: float  # residual branch multiplier m_L^-alpha
  c: float  # learning rate m_L^-c of the leaves inside residual branches
  g: float  # their gradient scale m_L^-g (Adam's eps must follow it)


def depth_exponents(alpha: float, optimizer: str = "adam") -> DepthExponents:
  """Depth exponents of the leaves inside residual branches (block leaves).

  alpha: 0 is off (standard practice: nothing depends on depth, so the L blocks'
  updates add up to Theta(m_L); the table is the width-only one), 1/2 is Depth-muP,
  1 is CompleteP. For alpha > 0 the
  branch multiplier scales the gradients of its leaves by m_L^-alpha. A block's update
  reaches the residual stream through the multiplier: m_L^-(alpha + c + extra), where
  extra is what the step carries besides the learning rate, 0 for Adam, the gradient
  scale alpha for SGD, the parameter scale 0 for Adafactor (init does not depend on
  depth). The L blocks' updates add up aligned, so a Theta(1) total asks
  1 - alpha - c - extra = 0: Adam lr m_L^(alpha - 1), SGD lr m_L^(2 alpha - 1).
  """
  _check_alpha(alpha)
  check_one_of("optimizer", optimizer, OPTIMIZERS)
  if alpha == 0:
    return DepthExponents(0.0, 0.0, 0.0)
  extra = {"adam": 0.0, "sgd": alpha, "adafactor": 0.0}[optimizer]
  return DepthExponents(alpha, 1.0 - alpha - extra, alpha)


def branch_multiplier(depth: float, base_depth: float, alpha: float) -> float:
  """m_L^-alpha, m_L = depth / base_depth: what a model multiplies each residual
  branch's output by (x + branch_multiplier * F(x)). Exactly 1.0 at the base depth."""
  _check_alpha(alpha)
  return _depth_ratio(depth, base_depth) ** -alpha


def _check_alpha(alpha) -> None:
  ok = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
  if not (ok and 0 <= alpha <= 1):
    raise ConfigError("alpha", alpha, "a number in [0, 1] (1/2 Depth-muP, 1 CompleteP)")


def _depth_ratio(depth, base_depth) -> float:
  for name, value in (("depth", depth), ("base_depth", base_depth)):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
      raise ConfigError(name, value, "a number > 0")
  return depth / base_depth


def _depth_rule(depth, base_depth, alpha, optimizer):
  """(m_L, DepthExponents), or None when no depth argument is given."""
  if depth is None and base_depth is None and alpha is None:
    return None
  if alpha is None:
    raise ConfigError("alpha", alpha, "a number in [0, 1] when depth is given")
  return _depth_ratio(depth, base_depth), depth_exponents(alpha, optimizer)


def in_blocks(path: tuple) -> bool:
  """The default `in_block`: a leaf is inside a residual branch when a key of its path
  is "blocks" (params["blocks"][i]...)."""
  return "blocks" in path


def _names(path) -> tuple:
  """A jax key path as plain keys: dict keys, attribute names, sequence indices."""
  return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


@dataclasses.dataclass(frozen=True)
class LeafRole:
  """A leaf's role and width multiplier m = n / n_base (1.0 for fixed leaves)."""
  role: str
  width_mult: float
  base_fan_in: int


@dataclasses.dataclass(frozen=True)
class LeafScale:
  """Everything width- and depth-dependent about one leaf. Not a pytree node: a leaf of
  the table."""
  role: str
  width_mult: float
  multiplier: float  # forward multiplier (models)
  init_std: float  # init std (models)
  lr: float  # learning-rate multiplier, width times depth (optimizers)
  eps: float  # Adam epsilon multiplier, width times depth (optimizers)
  # m^c: cancels the width part m^-c of lr (weight_decay_mode "width_scaled").
  decay_width_mult: float = 1.0
  # m_L^-alpha for a leaf inside a residual branch, 1 elsewhere (models: the branch's
  # output is multiplied by it once, not each leaf).
  branch_multiplier: float = 1.0


def _shape(x):
  return tuple(getattr(x, "shape", ()))


def _role(base_shape, shape) -> LeafRole:
  if len(base_shape) != len(shape):
    raise ValueError(f"leaf rank differs between base {base_shape} and target {shape}")
  prod = lambda s: math.prod(s) if s else 1
  if len(shape) < 2:  # biases, norm scales: like inputs (finite fan-in of one).
    fan_in, base_fan_in, fan_out, base_fan_out = 1, 1, prod(shape), prod(base_shape)
  else:  # the last axis is fan-out, the others fan-in (Dense, Embed, Conv kernels).
    fan_in, base_fan_in = prod(shape[:-1]), prod(base_shape[:-1])
    fan_out, base_fan_out = shape[-1], base_shape[-1]
  grows_in, grows_out = fan_in != base_fan_in, fan_out != base_fan_out
  if grows_in and grows_out:
    return LeafRole("hidden", fan_in / base_fan_in, base_fan_in)
  if grows_in:
    return LeafRole("output", fan_in / base_fan_in, base_fan_in)
  if grows_out:
    return LeafRole("input", fan_out / base_fan_out, base_fan_in)
  return LeafRole("fixed", 1.0, base_fan_in)


def infer_roles(base_params: Any, params: Any) -> Any:
  """Per-leaf `LeafRole` from shapes at the base width and at the target width.

  Both trees must have the same structure; leaves may be arrays or
  `jax.ShapeDtypeStruct`s. A dimension that differs between the two is a width
  dimension. For rank >= 2 the last axis is fan-out and the rest fan-in.
  """
  return jax.tree.map(lambda b, p: _role(_shape(b), _shape(p)), base_params, params)


def parametrize(
    base_params: Any,
    params: Any,
    parametrization: str = "mup",
    optimizer: str = "adam",
    alignment: str = "full",
    *,
    per_layer_lr: bool = True,
    scale_eps: bool = True,
    constants: Optional[Mapping[str, Mapping[str, float]]] = None,
    base_std: Any = None,
    depth: Optional[float] = None,
    base_depth: Optional[float] = None,
    alpha: Optional[float] = None,
    in_block: Optional[Callable[[tuple], bool]] = None,
) -> Any:
  """The per-leaf table (`LeafScale`) that models and optimizers share.

  Args:
    base_params: params (or shapes) at the base width; None means "at base width".
    params: params (or shapes) at the target width.
    parametrization: one of PARAMETRIZATIONS.
    optimizer: "adam" (Adam, StableAdamW, Adam-atan2, Lion), "sgd" or "adafactor".
    alignment: "full" or "none", the assumption behind the learning-rate exponents.
    per_layer_lr: False keeps one global learning rate (c = 0), as in plain SP: no
      width or depth lr factor (the eps factors and the branch multiplier stay).
    scale_eps: shrink Adam's eps with the gradient scale of each role.
    constants: optional per-role constant factors, e.g.
      {"output": {"multiplier": 0.5, "lr": 2.0}}; keys: multiplier, init_std, lr, eps.
    base_std: init std at the base width, a float or a tree like params; defaults to
      1/sqrt(fan_in at base width) for matrices and 1.0 for vectors.
    depth, base_depth, alpha: residual blocks at the target and at the base depth, and
      the branch exponent (`depth_exponents`). Both trees hold the target's blocks (the
      base differs in width only). None (default): no depth rule, today's table.
    in_block: predicate on a leaf's path (a tuple of dict keys, attribute names and
      indices): is the leaf inside a residual branch? Default `in_blocks`.
  """
  if base_params is None:
    base_params = params
  exps = exponents(parametrization, optimizer, alignment)
  constants = _checked_constants(constants)
  rule = _depth_rule(depth, base_depth, alpha, optimizer)
  in_block = in_block or in_blocks
  roles = infer_roles(base_params, params)
  stds = _base_stds(base_std, params)
  adam_eps = scale_eps and optimizer == "adam"

  def leaf(path, r: LeafRole, std=None) -> LeafScale:
    k = constants.get(r.role, {})
    scale = _width_scale(r, exps[r.role], k, std, per_layer_lr, adam_eps)
    if rule is None or not in_block(_names(path)):
      return scale
    return _depth_scale(scale, rule, per_layer_lr, adam_eps)

  is_role = lambda x: isinstance(x, LeafRole)
  if rule is not None and rule[0] != 1.0:
    _check_some_block(roles, in_block, is_role, depth)
  trees = (roles,) if stds is None else (roles, stds)
  return jax.tree_util.tree_map_with_path(leaf, *trees, is_leaf=is_role)


def _base_stds(base_std, params):
  """None (each leaf's default), or a tree like params: a float is every leaf's."""
  if base_std is None or not isinstance(base_std, (int, float)):
    return base_std
  return jax.tree.map(lambda _: float(base_std), params)


def _width_scale(r: LeafRole, e: Exponents, k, std, per_layer_lr, adam_eps) -> LeafScale:
  m = r.width_mult
  if std is None:
    std = 1.0 if r.base_fan_in == 1 else r.base_fan_in ** -0.5
  return LeafScale(
      role=r.role, width_mult=m,
      multiplier=k.get("multiplier", 1.0) * m ** -e.a,
      init_std=k.get("init_std", 1.0) * std * m ** -e.b,
      lr=k.get("lr", 1.0) * (m ** -e.c if per_layer_lr else 1.0),
      eps=k.get("eps", 1.0) * (m ** -e.g if adam_eps else 1.0),
      decay_width_mult=m ** e.c if per_layer_lr else 1.0)


def _depth_scale(scale: LeafScale, rule, per_layer_lr, adam_eps) -> LeafScale:
  """A block leaf's scale: depth's factors times width's (all 1.0 at m_L = 1)."""
  m_depth, d = rule
  return dataclasses.replace(
      scale, lr=scale.lr * (m_depth ** -d.c if per_layer_lr else 1.0),
      eps=scale.eps * (m_depth ** -d.g if adam_eps else 1.0),
      branch_multiplier=m_depth ** -d.alpha)


def _checked_constants(constants) -> dict:
  constants = dict(constants or {})
  for role, consts in constants.items():
    check_one_of("constants role", role, ROLES)
    for key in consts:
      check_one_of(f"constants[{role!r}] key", key, ("multiplier", "init_std", "lr", "eps"))
  return constants


def _check_some_block(roles, in_block, is_role, depth) -> None:
  # A predicate that matches nothing would silently leave depth out of the table.
  paths = jax.tree_util.tree_flatten_with_path(roles, is_leaf=is_role)[0]
  if not any(in_block(_names(path)) for path, _ in paths):
    raise ConfigError(f"depth = {depth!r}, but in_block matched no leaf: pass a predicate "
                      "that finds the leaves inside residual branches (default: a 'blocks' "
                      "key in the path)")


def _field(table, name):
  if table is None:
    return None
  return jax.tree.map(lambda s: getattr(s, name), table)


def lr_multipliers(table):
  """Tree of per-leaf learning-rate multipliers (None for no table)."""
  return _field(table, "lr")


def eps_multipliers(table):
  """Tree of per-leaf Adam epsilon multipliers (None for no table)."""
  return _field(table, "eps")


def forward_multipliers(table):
  """Tree of per-leaf forward multipliers (None for no table)."""
  return _field(table, "multiplier")


def init_stds(table):
  """Tree of per-leaf init stds (None for no table)."""
  return _field(table, "init_std")


def decay_width_multipliers(table):
  """Tree of per-leaf weight-decay width multipliers (None for no table)."""
  return _field(table, "decay_width_mult")


def scale_by_parametrization(table: Any) -> optax.GradientTransformation:
  """Multiply each leaf's update by its learning-rate multiplier from `table`.

  Chain it after any direction (scale_by_adam, scale_by_stable_adam,
  scale_by_adam_atan2, SGD's identity, scale_by_adafactor) and before
  scale_by_learning_rate. A None table is the identity. Leaves whose multiplier is
  1 are passed through untouched (no extra memory pass).
  """
  if table is None:
    return optax.identity()
  mults = lr_multipliers(table)

  def update_fn(updates, state, params=None):
    del params
    scaled = jax.tree.map(lambda u, k: u if k == 1.0 else u * k, updates, mults)
    return scaled, state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def add_decayed_weights(weight_decay: Any, mask: Any = None, *,
                        scales: Any = None) -> optax.GradientTransformation:
  """`optax.add_decayed_weights` with a static per-leaf factor: u + weight_decay * s * p.

  scales: a tree like params of Python floats (None: `optax.add_decayed_weights`
  itself). weight_decay: a scalar, also traced, or a schedule of the step count (as
  `optax.add_decayed_weights` takes it).
  """
  if scales is None:
    return optax.add_decayed_weights(weight_decay, mask)
  skip = lambda x: isinstance(x, optax.MaskedNode)
  scheduled = callable(weight_decay)

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(jnp.zeros([], jnp.int32)) if scheduled else optax.EmptyState()

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("add_decayed_weights needs the params: pass them to update")
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
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    parametrization: Any = None,
    weight_decay_mode: str = "coupled",
) -> optax.GradientTransformation:
  """An optimizer from an update direction: the chain every alias here shares.

  Weight decay is decoupled (AdamW's), on the leaves `mask` selects. Per step, with
  k the leaf's learning-rate multiplier from the `parametrization` table (None: 1):

    coupled       theta -= lr_t * k * weight_decay * theta  (AdamW's; added to the
                  direction, so k and the learning rate scale it)
    width_scaled  coupled, with weight_decay times the leaf's `decay_width_mult` m^c,
                  the inverse of the width part m^-c of k (m = LeafScale.width_mult):
                  k * weight_decay is the same at every width, as microsoft/mup's
                  MuAdam and MuSGD make it (lr / r and weight_decay * r per group;
                  MuSGD's decay is torch's L2 term, which goes through momentum, while
                  here it is decoupled, added after the direction).
                  Per role (input, hidden, output), Adam tables: mup m^1/2, m, m^1/2;
                  mup_tp5 and sp 1, m, m (hidden m is MuAdam's width_mult). SGD tables:
                  mup_tp5 1/m, 1, m; mup 1, 1, 1 (full alignment; under "none", m^c of
                  that table's c). Fixed leaves and per_layer_lr=False: 1.
                  The depth and constant factors of k stay coupled.
    independent   theta -= weight_decay * theta, after the learning rate: neither the
                  learning rate nor k touch it. For Wortsman et al.'s lr_t / lr_peak
                  factor pass weight_decay as a schedule (`build` does).
  """
  check_one_of("weight_decay_mode", weight_decay_mode, DECAY_MODES)
  lr = optax.scale_by_learning_rate(learning_rate)
  if weight_decay_mode == "independent":
    # The chain's update is already -lr * direction here: the decay enters negated.
    negated = (lambda n: -weight_decay(n)) if callable(weight_decay) else -weight_decay
    return optax.chain(direction, scale_by_parametrization(parametrization), lr,
                       optax.add_decayed_weights(negated, mask))
  scales = None
  if weight_decay_mode == "width_scaled":
    scales = decay_width_multipliers(parametrization)
  return optax.chain(
      direction,
      add_decayed_weights(weight_decay, mask, scales=scales),
      scale_by_parametrization(parametrization),
      lr,
  )
