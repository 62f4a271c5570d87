"""Argument checks shared by every public constructor of adamlab.optim.

Each raises ValueError("name = value: must be allowed"). The message starts with the
argument's name, so the trainer's config layer can prefix it with its section
("optimizer.b2 = 1.5: ...") and reuse these checks for its fields.

Values that are traced (an injected hyperparameter under jit or vmap) cannot be checked
here; they were checked when they were concrete.
"""

import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


def fail(name: str, value: Any, allowed: str):
  raise ValueError(f"{name} = {value!r}: must be {allowed}")


def fail_described(name: str, what: str, allowed: str):
  """As `fail`, for a value described in words rather than shown (a tree, a shape)."""
  raise ValueError(f"{name} is {what}: must be {allowed}")


def _concrete(value: Any) -> Optional[float]:
  """value as a float, or None when it cannot be known here (traced)."""
  if isinstance(value, jax.core.Tracer):
    return None
  array = np.asarray(value)
  real = jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)
  if not real or array.ndim:  # (bools, strings, vectors; bfloat16 is real)
    raise TypeError
  return float(array)


def number(
  name: str,
  value: Any,
  lo: Optional[float] = None,
  hi: Optional[float] = None,
  *,
  open_lo: bool = False,
  open_hi: bool = False,
  allowed: str = "",
) -> None:
  """A finite real number in [lo, hi] (open ends where asked); schedules are skipped."""
  if callable(value):
    return
  lo_text = "-inf" if lo is None else f"{lo:g}"
  hi_text = "inf" if hi is None else f"{hi:g}"
  allowed = allowed or (
    f"a finite number in {'(' if open_lo else '['}{lo_text}, "
    f"{hi_text}{')' if open_hi or hi is None else ']'}"
  )
  try:
    x = _concrete(value)
  except (TypeError, ValueError):
    fail(name, value, allowed)
  if x is None:
    return
  ok = math.isfinite(x)
  ok = ok and (lo is None or (x > lo if open_lo else x >= lo))
  ok = ok and (hi is None or (x < hi if open_hi else x <= hi))
  if not ok:
    fail(name, value, allowed)


def scalar_or_schedule(name: str, value: Any, allowed: str = "") -> None:
  """A finite number >= 0, or a schedule (a callable of the step count)."""
  number(name, value, 0.0, allowed=allowed or "a finite number >= 0, or a schedule")


def decay_rate(name: str, value: Any) -> None:
  """A moment's decay rate (b1, b2, momentum): in [0, 1)."""
  number(name, value, 0.0, 1.0, open_hi=True, allowed="a finite number in [0, 1)")


def positive(name: str, value: Any) -> None:
  number(name, value, 0.0, open_lo=True, allowed="a finite number > 0")


def non_negative(name: str, value: Any) -> None:
  number(name, value, 0.0, allowed="a finite number >= 0")


def integer(name: str, value: Any, lo: int) -> None:
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
  if not (ok and value >= lo):
    fail(name, value, f"an integer >= {lo}")


def one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
  if value not in allowed:
    fail(name, value, "one of " + ", ".join(repr(a) for a in allowed))


def boolean(name: str, value: Any) -> None:
  """True or False (a flag that picks the computation, so never traced)."""
  if not isinstance(value, (bool, np.bool_)):
    fail(name, value, "True or False")


def float_dtype(name: str, value: Any) -> None:
  """None, or a floating dtype (a state's storage dtype)."""
  if value is None:
    return
  try:
    ok = jnp.issubdtype(jnp.dtype(value), jnp.floating)
  except TypeError:
    ok = False
  if not ok:
    fail(name, value, "None or a floating dtype, e.g. jnp.bfloat16")


def _no_leaf(x) -> bool:
  return x is None or isinstance(x, optax.MaskedNode)


def update_shapes(updates: Any, like: Any, like_name: str = "params") -> None:
  """ValueError naming the leaf whose update has another shape than its leaf of `like`.

  like: the params, a state's moments (shaped like the params) or a tree of
  `jax.ShapeDtypeStruct`. Leaves that optax.masked or partition left out (MaskedNode)
  and None are skipped. Shapes are static: under jit this runs once, at trace time.
  """
  got, tree = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_no_leaf)
  want, want_tree = jax.tree_util.tree_flatten_with_path(like, is_leaf=_no_leaf)
  if tree != want_tree:  # type: ignore[operator]
    mine = {jax.tree_util.keystr(p) for p, _ in got}
    theirs = {jax.tree_util.keystr(p) for p, _ in want}
    diff = sorted(theirs - mine) or sorted(mine - theirs) or ["(other containers)"]
    fail_described(
      "updates",
      f"a tree of another structure than the {like_name} (differing at {', '.join(diff[:3])})",
      f"the structure of the {like_name}",
    )
  for (path, u), (_, w) in zip(got, want):
    if _no_leaf(u) or _no_leaf(w) or np.shape(u) == np.shape(w):
      continue
    fail_described(
      f"params{jax.tree_util.keystr(path)}",
      f"given an update of shape {np.shape(u)}",
      f"given one of its own shape {np.shape(w)} (gradients of other params?)",
    )
