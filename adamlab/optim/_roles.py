"""Which axes of a leaf are fan-in and fan-out, and so its role, from two shapes.

A dimension that differs between the base and the target shape is a width
dimension. For a matrix the first axis is fan-in and the second fan-out (Flax, Haiku,
optax). A kernel of rank >= 3 splits its axes into a fan-in group and a fan-out group
at some position k: Flax's `DenseGeneral` and `MultiHeadDotProductAttention` store
(d, heads, head_dim) for q, k and v and (heads, head_dim, d) for the output, a
convolution (h, w, in, out). A split is valid when each group holds at most one width
axis (a layer's fan-in and fan-out each grow linearly with width). Among the valid
splits the one whose single-axis side equals the product of the other side at the
base (d = heads * head_dim) wins; then the last-axis split (convolutions); a leaf
that is still ambiguous is an error asking for `fan_in_axes`. Vectors, and leaves
named "bias" or "b" of any rank, have a fan-in of one.
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
  ratio: Optional[Fraction]  # the width ratio of the leaf's changed axes (None: none)
  fan_in: tuple = ()  # the fan-in axes; the others are fan-out


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
      "at most one width axis in fan-in and one in fan-out: pass fan_in_axes",
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
    f"one of {[tuple(range(k)) for k in valid]}: pass fan_in_axes",
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


def role(path, base, shape, fan_in_axes: Optional[Callable] = None) -> LeafRole:
  """The LeafRole of one leaf from its base and target shapes."""
  where = leaf_name(path)
  base, shape = tuple(base), tuple(shape)
  if len(base) != len(shape):
    fail_described(where, f"{shape}, of another rank than the base's {base}", "of the base's rank")
  changed = [i for i, (b, s) in enumerate(zip(base, shape)) if b != s]
  ratios = {Fraction(shape[i], base[i]) for i in changed if base[i] > 0}
  if len(ratios) > 1:
    fail_described(
      where,
      f"{shape}, grown from {base} by " + " and ".join(str(r) for r in sorted(ratios)),
      "grown by one width ratio (only width dimensions may differ)",
    )
  given = fan_in_axes(path_names(path), shape) if fan_in_axes else None
  if given is not None:
    fan_in = tuple(a % len(shape) for a in given)
  elif len(shape) < 2 or _is_bias(path):  # like inputs: a fan-in of one
    fan_in = ()
  else:
    fan_in = tuple(_fan_in_axes(where, base, shape, changed))
  fan_out = tuple(i for i in range(len(shape)) if i not in fan_in)
  pick = lambda s, axes: _prod([s[i] for i in axes])
  base_fan_in = pick(base, fan_in)
  m_in = pick(shape, fan_in) / base_fan_in
  m_out = pick(shape, fan_out) / pick(base, fan_out)
  ratio = ratios.pop() if ratios else None
  if m_in != 1 and m_out != 1:
    return LeafRole("hidden", m_in, base_fan_in, ratio, fan_in)
  if m_in != 1:
    return LeafRole("output", m_in, base_fan_in, ratio, fan_in)
  if m_out != 1:
    return LeafRole("input", m_out, base_fan_in, ratio, fan_in)
  return LeafRole("fixed", 1.0, base_fan_in, ratio, fan_in)


def check_one_width(roles: Any, allow_narrower: bool) -> None:
  """Every leaf that grows grows by one ratio, above 1 unless narrower is asked for."""
  is_role = lambda x: isinstance(x, LeafRole)
  leaves = jax.tree_util.tree_flatten_with_path(roles, is_leaf=is_role)[0]
  grown = [(p, r) for p, r in leaves if r.ratio is not None]
  if not grown:
    return
  counts: dict = {}
  for _, r in grown:
    counts[r.ratio] = counts.get(r.ratio, 0) + 1
  width = max(counts, key=lambda ratio: counts[ratio])
  for p, r in grown:
    if r.ratio != width:
      fail_described(
        leaf_name(p),
        f"grown by {r.ratio}",
        f"grown by the model's width ratio {width}: only width dimensions "
        "may differ between base and target",
      )
  fans = {r.role for _, r in grown}
  if not fans & {"hidden", "output"} or not fans & {"hidden", "input"}:
    # A width feature one layer makes, another consumes: its fan-in grows somewhere.
    fail_described(
      leaf_name(grown[0][0]),
      f"grown by {width} in its {fans.pop()} fan alone",
      "matched by a leaf whose other fan grows (a width dimension "
      "is one layer's fan-out and the next one's fan-in): only width "
      "dimensions may differ between base and target",
    )
  if width < 1 and not allow_narrower:
    fail(
      "target / base width ratio",
      str(width),
      ">= 1: is the target narrower than the base (base and target swapped)? "
      "Pass allow_narrower=True to mean it",
    )
