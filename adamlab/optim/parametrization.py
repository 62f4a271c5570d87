"""Width parametrizations: one per-leaf table for models and optimizers.

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
"""

import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Optional

import jax
import optax

from adamlab.errors import check_one_of

ROLES = ("input", "hidden", "output", "fixed")
PARAMETRIZATIONS = ("sp", "ntk", "mup", "mfp", "mup_tp5")
OPTIMIZERS = ("adam", "sgd", "adafactor")
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


@dataclasses.dataclass(frozen=True)
class LeafRole:
  """A leaf's role and width multiplier m = n / n_base (1.0 for fixed leaves)."""
  role: str
  width_mult: float
  base_fan_in: int


@dataclasses.dataclass(frozen=True)
class LeafScale:
  """Everything width-dependent about one leaf. Not a pytree node: a leaf of the table."""
  role: str
  width_mult: float
  multiplier: float  # forward multiplier (models)
  init_std: float  # init std (models)
  lr: float  # learning-rate multiplier (optimizers)
  eps: float  # Adam epsilon multiplier (optimizers)


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
) -> Any:
  """The per-leaf table (`LeafScale`) that models and optimizers share.

  Args:
    base_params: params (or shapes) at the base width; None means "at base width".
    params: params (or shapes) at the target width.
    parametrization: one of PARAMETRIZATIONS.
    optimizer: "adam" (Adam, StableAdamW, Adam-atan2, Lion), "sgd" or "adafactor".
    alignment: "full" or "none", the assumption behind the learning-rate exponents.
    per_layer_lr: False keeps one global learning rate (c = 0), as in plain SP.
    scale_eps: shrink Adam's eps with the gradient scale of each role.
    constants: optional per-role constant factors, e.g.
      {"output": {"multiplier": 0.5, "lr": 2.0}}; keys: multiplier, init_std, lr, eps.
    base_std: init std at the base width, a float or a tree like params; defaults to
      1/sqrt(fan_in at base width) for matrices and 1.0 for vectors.
  """
  if base_params is None:
    base_params = params
  exps = exponents(parametrization, optimizer, alignment)
  constants = dict(constants or {})
  for role, consts in constants.items():
    check_one_of("constants role", role, ROLES)
    for key in consts:
      check_one_of(f"constants[{role!r}] key", key, ("multiplier", "init_std", "lr", "eps"))
  roles = infer_roles(base_params, params)
  if base_std is None or not isinstance(base_std, (int, float)):
    stds = base_std
  else:
    stds = jax.tree.map(lambda _: float(base_std), params)

  def leaf(r: LeafRole, std=None) -> LeafScale:
    e, m = exps[r.role], r.width_mult
    k = constants.get(r.role, {})
    if std is None:
      std = 1.0 if r.base_fan_in == 1 else r.base_fan_in ** -0.5
    return LeafScale(
        role=r.role, width_mult=m,
        multiplier=k.get("multiplier", 1.0) * m ** -e.a,
        init_std=k.get("init_std", 1.0) * std * m ** -e.b,
        lr=k.get("lr", 1.0) * (m ** -e.c if per_layer_lr else 1.0),
        eps=k.get("eps", 1.0) * (m ** -e.g if scale_eps and optimizer == "adam" else 1.0))

  is_role = lambda x: isinstance(x, LeafRole)
  if stds is None:
    return jax.tree.map(leaf, roles, is_leaf=is_role)
  return jax.tree.map(leaf, roles, stds, is_leaf=is_role)


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


def with_learning_rate(
    direction: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    parametrization: Any = None,
) -> optax.GradientTransformation:
  """An optimizer from an update direction: the chain every alias here shares.

  Weight decay is added to the direction (decoupled, as in AdamW), so the per-leaf
  learning-rate multipliers of the `parametrization` table (None: all 1) and the
  learning rate scale it too.
  """
  return optax.chain(
      direction,
      optax.add_decayed_weights(weight_decay, mask),
      scale_by_parametrization(parametrization),
      optax.scale_by_learning_rate(learning_rate),
  )
