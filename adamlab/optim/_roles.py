"""Which axes of a leaf are fan-in, fan-out and layer axes, and so its role.

A dimension that differs between the base and the target shape is a width dimension;
each has its own ratio (Llama's rounded feed-forward size grows by 704/192 where d
grows by 4). The fan-in axes come from the model's computation when `parametrize` is
given `apply` (`_usage`), else from the shape rule:

- a matrix's first axis is fan-in and its second fan-out (Flax, Haiku, optax);
- a kernel of rank >= 3 splits its axes into a fan-in group and a fan-out group at
  some position k, each holding at most one width axis. Among the valid splits, the
  one whose single-axis side equals the product of the other at the base
  (d = heads * head_dim) wins; then the last-axis split (convolutions); a leaf still
  ambiguous is an error asking for `fan_in_axes`;
- vectors, and leaves named "bias" or "b" of any rank, have a fan-in of one.

A leaf's numbers use one ratio: its fan-in's for hidden and output leaves, its
fan-out's for input leaves (see `parametrize`).
"""

import dataclasses
import math
from fractions import Fraction
from typing import Any, Callable, Optional, Sequence

import jax

from adamlab.optim._checks import fail, fail_described


@dataclasses.dataclass(frozen=True)
class LeafRole:
  role: str
  width_mult: float
  base_fan_in: int
  fan_in: tuple = ()  # the fan-in axes; the others, less layer axes, are fan-out
  layer_axes: tuple = ()  # stacked layers: neither fan-in nor width
  kind: str = "matrix"  # matrix, embedding or vector (init keeps a vector's value)
  readout_mult: float = 1.0  # the width ratio of its use as a readout (a tied embedding)
  widths: tuple = ()  # (fan, base, probe and target sizes) of each width axis


def is_role(x) -> bool:
  return isinstance(x, LeafRole)


def path_names(path) -> tuple:
  """A jax key path as plain keys: dict keys, attribute names, sequence indices."""
  return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def leaf_name(path) -> str:
  return "params" + jax.tree_util.keystr(tuple(path))


def _prod(shape) -> int:
  return math.prod(shape) if shape else 1


def _fan_in_axes(where: str, base: tuple, shape: tuple, changed: list) -> Sequence[int]:
  rank = len(shape)
  valid = [
    k
    for k in range(1, rank)
    if sum(i < k for i in changed) <= 1 and sum(i >= k for i in changed) <= 1
  ]
  if not valid:
    fail_described(
      where,
      f"{shape}, grown from {base} in axes {tuple(changed)}",
      "at most one width axis in fan-in and one in fan-out: pass fan_in_axes, or apply",
    )
  if rank >= 3:
    products = [k for k in valid if _single_side_is_product(base, k)]
    if len(products) == 1:
      return tuple(range(products[0]))
  if rank - 1 in valid:
    return tuple(range(rank - 1))
  if len(valid) == 1:
    return tuple(range(valid[0]))
  return fail_described(
    where,
    f"{shape}, grown from {base}, with ambiguous fan-in axes",
    f"one of {[tuple(range(k)) for k in valid]}: pass fan_in_axes, or apply",
  )


def _single_side_is_product(base: tuple, k: int) -> bool:
  fan_in, fan_out = base[:k], base[k:]
  if len(fan_in) == 1 and len(fan_out) > 1:
    return fan_in[0] == _prod(fan_out)
  if len(fan_out) == 1 and len(fan_in) > 1:
    return fan_out[0] == _prod(fan_in)
  return False


BIAS_NAMES = ("bias", "b")  # Flax, Equinox and Haiku's names for a bias


def _is_bias(path) -> bool:
  """A bias of any rank (attention's q/k/v bias is (heads, head_dim)): every axis is
  fan-out, by its name, since its shape looks like a matrix."""
  names = [n for n in path_names(path) if n != "value"]  # (nnx: the Variable's value)
  return bool(names) and names[-1] in BIAS_NAMES


def role(path, base, shape, probe=None, fan_in_axes: Optional[Callable] = None, use=None):
  """The LeafRole of one leaf from its base and target shapes.

  probe: the shape at a width that tells the width axes (`parametrize`'s delta), or
  None for the target. use: the leaf's `_usage.Use` from the model's trace, or None."""
  where = leaf_name(path)
  base, shape = tuple(base), tuple(shape)
  has_probe = probe is not None
  probe = tuple(probe) if has_probe else shape
  for other in (shape, probe):
    if len(base) != len(other):
      fail_described(
        where, f"{other}, of another rank than the base's {base}", "of the base's rank"
      )
  changed = [i for i, (b, s) in enumerate(zip(base, probe)) if b != s]
  if has_probe and any(b != s and i not in changed for i, (b, s) in enumerate(zip(base, shape))):
    fail_described(where, f"{shape} at the target, {probe} at delta",
                   "delta must differ from base in the width axes only")  # fmt: skip
  layers, kind, readout = (), "matrix", None
  given = None if use is not None else given_fan_in(path, shape, fan_in_axes)
  if use is not None:  # (given, if any, is in it: `_usage.decide`)
    fan_in, layers, kind, readout = use.fan_in, use.layer_axes, use.kind, use.readout_fan_in
    _check_use(where, use, base, shape, changed)
  elif given is not None:
    fan_in = given
  elif len(shape) < 2 or _is_bias(path):  # like inputs: a fan-in of one
    fan_in = ()
  else:
    fan_in = tuple(_fan_in_axes(where, base, shape, changed))
  if not fan_in and kind == "matrix":
    kind = "vector"
  fan_out = tuple(i for i in range(len(shape)) if i not in fan_in and i not in layers)
  ratio = lambda axes: Fraction(_prod([shape[i] for i in axes]), _prod([base[i] for i in axes]))
  grows = lambda axes: any(i in changed for i in axes)
  widths = tuple(
    ("in" if i in fan_in else "out", base[i], probe[i], shape[i])
    for i in changed
    if i not in layers
  ) + tuple(("in", base[i], probe[i], shape[i]) for i in (readout or ()) if i in changed)
  info: dict[str, Any] = dict(
    base_fan_in=_prod([base[i] for i in fan_in]),
    fan_in=tuple(fan_in),
    layer_axes=tuple(layers),
    kind=kind,
    widths=widths,
  )
  if grows(fan_in):
    role, m = "hidden" if grows(fan_out) else "output", float(ratio(fan_in))
  elif grows(fan_out):
    role, m = "input", float(ratio(fan_out))
  else:
    role, m = "fixed", 1.0
  # As a readout a leaf's fan-in is what its product contracts (the trace's), or the
  # width it grows in (shapes: a tied embedding's d).
  readout_mult = m if readout is None else float(ratio(readout))
  return LeafRole(role, m, readout_mult=readout_mult, **info)


def given_fan_in(path, shape, fan_in_axes: Optional[Callable]) -> Optional[tuple]:
  """The fan-in axes a user's `fan_in_axes(path names, shape)` gives a leaf, or None."""
  given = fan_in_axes(path_names(path), tuple(shape)) if fan_in_axes else None
  return None if given is None else tuple(sorted(a % len(shape) for a in given))


def _check_use(where, use, base, shape, changed) -> None:
  """Axes the trace says are fixed must not change between base and target."""
  for i in use.layer_axes:
    if i in changed or base[i] != shape[i]:
      fail_described(
        where,
        f"{shape}, grown from {base} in axis {i}, which apply slices layer by layer",
        "the same number of layers in base and target (the depth rule takes "
        "depth=, base_depth=, alpha=)",
      )
  if use.kind == "embedding" and any(i in changed for i in use.fan_in):
    fail_described(
      where,
      f"{shape}, grown from {base} in its looked-up axes {tuple(use.fan_in)}",
      "a lookup table whose looked-up (vocabulary) axes are fixed across width",
    )


def check_widths(roles: Any, allow_narrower: bool) -> None:
  """Every width dimension is one layer's fan-out and another's fan-in (a feature one
  layer makes and another consumes), and none shrinks unless narrower is asked for."""
  leaves = jax.tree_util.tree_flatten_with_path(roles, is_leaf=is_role)[0]
  fans: dict = {}
  ratios = set()
  for p, r in leaves:
    for fan, b, probe, t in r.widths:
      fans.setdefault((b, probe), (p, set()))[1].add(fan)
      ratios.add(Fraction(t, b))
  # A dimension seen on one side only (a toy model's last layer, a head_dim no
  # parameter consumes) passes when it grows by a ratio that a matched one has.
  matched = {Fraction(probe, b) for (b, probe), (_, seen) in fans.items() if len(seen) == 2}
  for (b, probe), (p, seen) in fans.items():
    if len(seen) == 1 and Fraction(probe, b) not in matched:
      fan = "input" if "in" in seen else "output"
      fail_described(
        leaf_name(p),
        f"grown by {Fraction(probe, b)} (from {b} to {probe}) in its {fan} fan alone",
        "matched by a leaf whose other fan grows (a width dimension "
        "is one layer's fan-out and the next one's fan-in): only width "
        "dimensions may differ between base and target",
      )
  narrowest = min(ratios, default=Fraction(1))
  if narrowest < 1 and not allow_narrower:
    fail(
      "target / base width ratio",
      str(narrowest),
      ">= 1: is the target narrower than the base (base and target swapped)? "
      "Pass allow_narrower=True to mean it",
    )
