"""How a model uses each parameter, read from its traced forward (the jaxpr).

Shapes say which axes grow with width; only the computation says how a leaf is used.
`trace(apply, params)` traces `apply(params)` once on shapes (`jax.make_jaxpr` on
ShapeDtypeStructs: no memory, no FLOPs) and follows every value derived from a leaf,
axis by axis, through reshape, transpose, broadcast, slicing, dtype conversion and
scalar scaling, into `jit`, `scan`, `while`, `cond`, `remat` and custom derivatives:

- the axes a `dot_general` contracts, or a convolution sums over, are its fan-in;
- an axis that `scan` slices, a `dot_general` batches over (a vmapped stack), or that
  is indexed away one entry at a time (`W[i]`) is a layer axis: neither fan-in nor width;
- a lookup of many entries (`gather`: `jnp.take(E, tokens)`) makes it an embedding,
  whose looked-up axis is its (finite) fan-in, as the one-hot product would be;
- elementwise use against activations makes it a vector (gains, biases).

A leaf used two ways, such as a tied embedding (looked up, then `h @ E.T`), keeps its
lookup as its role and its product as its readout use.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import numpy as np

from adamlab.optim._checks import fail_described

# Primitives that act on each element and keep the axes of their operands.
_UNARY = {
  "neg", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "sqrt",
  "rsqrt", "cbrt", "abs", "sign", "integer_pow", "square", "erf", "convert_element_type",
  "copy", "copy_p", "reduce_precision", "real", "imag", "stop_gradient", "optimization_barrier",
  "sharding_constraint", "mesh_cast", "reshard", "pvary", "floor", "ceil", "round", "name",
}  # fmt: skip
_NARY = {"add", "add_any", "sub", "mul", "div", "max", "min", "pow", "atan2", "rem", "select_n",
         "clamp", "nextafter"}  # fmt: skip
# Sub-jaxpr parameters of call-like primitives whose operands are the jaxpr's inputs.
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def call_body(eqn) -> Optional[tuple[Any, Any]]:
  """(jaxpr, consts) of a call-like equation (jit, remat, custom derivatives, ...)
  whose operands are its body's inputs, or None."""
  sub = next((eqn.params[k] for k in _CALL_PARAMS if k in eqn.params), None)
  if sub is None:
    return None
  body, consts = getattr(sub, "jaxpr", sub), getattr(sub, "consts", ())
  return (body, consts) if len(body.invars) == len(eqn.invars) else None


@dataclasses.dataclass
class Use:
  """What the trace says of one leaf.

  Attributes:
    kind: "matrix" (contracted), "embedding" (looked up) or "vector" (elementwise).
    fan_in: the leaf's fan-in axes (contracted, or looked up).
    layer_axes: axes sliced by a scan, batched or indexed one entry at a time.
    readout_fan_in: a looked-up leaf's fan-in axes in its product (a tied readout).
  """

  kind: str
  fan_in: tuple
  layer_axes: tuple
  readout_fan_in: Optional[tuple] = None


@dataclasses.dataclass
class _Facts:
  contracted: list = dataclasses.field(default_factory=list)  # fan-in sets, one per product
  looked_up: list = dataclasses.field(default_factory=list)
  layers: set = dataclasses.field(default_factory=set)
  elementwise: bool = False
  unknown: set = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Trace:
  """A forward traced on shapes: its jaxpr, which leaf each contraction (`dot_general`
  or convolution, by `id` of its equation) multiplies, and each leaf's facts, from
  which `decide` gives its `Use`."""

  jaxpr: Any
  products: dict
  facts: list


@dataclasses.dataclass
class _Ctx:
  facts: list
  shapes: list
  products: dict


def trace(apply: Callable, params: Any) -> Trace:
  """Trace `apply(params)` on shapes and read every leaf's facts (in flatten order)."""
  leaves, treedef = jax.tree.flatten(params)
  shapes = [jax.ShapeDtypeStruct(np.shape(x), getattr(x, "dtype", np.float32)) for x in leaves]
  try:
    closed = jax.make_jaxpr(lambda *xs: apply(jax.tree.unflatten(treedef, xs)))(*shapes)
  except Exception as e:  # the user's forward failed on the params' shapes
    fail_described(
      "apply",
      f"a forward that fails on these params ({type(e).__name__}: {e})",
      "f(params) -> outputs, traceable on the params' shapes",
    )
  ctx = _Ctx([_Facts() for _ in leaves], shapes, {})
  tags = [{i: tuple(frozenset([a]) for a in range(len(s.shape)))} for i, s in enumerate(shapes)]
  _walk(closed.jaxpr, tags, ctx)
  return Trace(closed, ctx.products, ctx.facts)


def decide(f: _Facts, name: str, given: Optional[tuple] = None) -> Use:
  """A leaf's `Use` from its facts; name: the leaf's, for errors.

  given: the fan-in axes a user passed for it, which decide a use the trace cannot
  (elementwise only, unknown primitives, two products) and must agree with a single
  product or lookup the trace found. Without it, a use the trace cannot decide (read
  by no product, or only by primitives it does not know) is a ValueError."""
  layers = tuple(sorted(f.layers))
  drop = lambda axes: tuple(sorted(set(axes) - f.layers))
  products = {drop(c) for c in f.contracted}
  looked_up = drop(set().union(*f.looked_up)) if f.looked_up else None
  if given is None:
    return _decide(f, name, layers, products, looked_up)
  fan_in = drop(given)
  found = {looked_up} if looked_up is not None else products
  if len(found) == 1 and found != {fan_in}:
    fail_described(
      name,
      f"given fan_in_axes {tuple(given)}, but apply contracts it over {found.pop()}",
      "the axes its forward contracts (drop fan_in_axes for it)",
    )
  if len(found) > 1 and fan_in not in found:
    _ambiguous(name, found)
  readout = next(iter(products)) if f.looked_up and len(products) == 1 else None
  return Use("embedding" if f.looked_up else "matrix", fan_in, layers, readout)


def _decide(f: _Facts, name: str, layers, products, looked_up) -> Use:
  """`decide` with no axes given: the trace alone."""
  if looked_up is not None:
    readout = None
    if len(products) == 1:
      readout = products.pop()
    elif products:
      _ambiguous(name, products)
    return Use("embedding", looked_up, layers, readout)
  if len(products) > 1:
    _ambiguous(name, products)
  if products:
    return Use("matrix", products.pop(), layers)
  if f.elementwise:
    return Use("vector", (), layers)
  if f.unknown:
    fail_described(
      name,
      "used only by " + ", ".join(sorted(f.unknown)) + ", which do not say its fan-in",
      "a leaf read by a product, a lookup or elementwise: pass fan_in_axes for it",
    )
  return fail_described(name, "never read by apply", "a leaf the forward uses (or remove it)")


def _ambiguous(name, products):
  fail_described(
    name,
    "contracted over axes " + " and ".join(str(p) for p in sorted(products)) + " in two products",
    "one fan-in: pass fan_in_axes for it",
  )


def literal(v) -> bool:
  """A jaxpr operand that is a constant written in the equation, not a variable."""
  return type(v).__name__ == "Literal"  # (jax.core.Literal moved between releases)


def _walk(jaxpr, tags: list, ctx) -> list:
  """Propagate leaf tags ({leaf: per axis the frozenset of leaf axes it carries}, or
  None, per invar) through `jaxpr`; returns the outvars' tags."""
  env: dict = {}
  for v, t in zip(jaxpr.invars, tags):
    if t:
      env[v] = t
  read = lambda v: None if literal(v) else env.get(v)
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    if not any(ins):
      continue
    outs = _eqn(eqn, ins, ctx)
    for v, t in zip(eqn.outvars, outs):
      if t:
        env[v] = t
  return [read(v) for v in jaxpr.outvars]


def _eqn(eqn, ins, ctx) -> list:
  name, p = eqn.primitive.name, eqn.params
  none = [None] * len(eqn.outvars)
  if name == "scan":
    return _scan(eqn, ins, ctx)
  if name == "while":
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    return _walk(p["body_jaxpr"].jaxpr, ins[nc : nc + nb] + ins[nc + nb :], ctx)
  if name == "cond":
    outs = [_walk(b.jaxpr, ins[1:], ctx) for b in p["branches"]]
    return [_union(*ts) for ts in zip(*outs)]
  body = call_body(eqn)
  if body is not None:
    return _walk(body[0], ins, ctx)
  if name == "dot_general":
    _dot(eqn, ins, ctx)
    return none
  if name == "conv_general_dilated":
    return _conv(eqn, ins, ctx)
  if name == "gather":
    return [_gather(eqn, ins, ctx)]
  if name in ("split", "unstack"):  # several outputs, each with the operand's axes
    t = ins[0]
    if name == "unstack":
      _layers_dropped(t, {p["axis"]}, ctx)
      t = {i: a[: p["axis"]] + a[p["axis"] + 1 :] for i, a in t.items()}
    return [t] * len(eqn.outvars)
  if name == "stack":  # a new axis (the stack of blocks a scan will slice)
    new = lambda a: a[: p["axis"]] + (frozenset(),) + a[p["axis"] :]
    return [_union(*[{i: new(a) for i, a in t.items()} for t in ins if t])]
  if name in _UNARY or name in _NARY:
    return [_elementwise(eqn, ins, ctx)]
  out = _layout(eqn, ins, ctx)
  if out is not None:
    return [out]
  for t in ins:
    for leaf in t or ():
      ctx.facts[leaf].unknown.add(name)
  return none


def _layout(eqn, ins, ctx) -> Optional[dict]:
  """Primitives that move, copy or slice axes: the output's tags, or None if unknown."""
  name, p, t = eqn.primitive.name, eqn.params, ins[0]
  shape = lambda v: tuple(v.aval.shape)
  if name in ("slice", "dynamic_slice", "rev", "pad", "dynamic_update_slice", "cumsum",
              "concatenate"):  # fmt: skip
    return _union(*[x for x in ins if x])
  if name == "transpose":
    return {i: tuple(a[j] for j in p["permutation"]) for i, a in t.items()}
  if name == "broadcast_in_dim":
    out = {}
    for i, a in t.items():
      new: list = [frozenset()] * len(p["shape"])
      for src, dst in enumerate(p["broadcast_dimensions"]):
        new[dst] = a[src]
      out[i] = tuple(new)
    return out
  if name == "squeeze":
    dims = {d % len(shape(eqn.invars[0])) for d in p["dimensions"]}
    _layers_dropped(t, dims, ctx)
    return {i: tuple(x for k, x in enumerate(a) if k not in dims) for i, a in t.items()}
  if name == "reshape":
    return _reshape(t, shape(eqn.invars[0]), shape(eqn.outvars[0]), ctx)
  return None


def _layers_dropped(t, dims, ctx) -> None:
  """Axes removed one entry at a time (W[i]): layer axes of the leaves they carry."""
  for i, a in t.items():
    for d in dims:
      ctx.facts[i].layers.update(k for k in a[d] if ctx.shapes[i].shape[k] > 1)


def _reshape(t, src, dst, ctx) -> dict:
  """Match axes of src and dst by running products (size-1 axes dropped or added)."""
  keep_src = [k for k, n in enumerate(src) if n != 1]
  _layers_dropped(t, {k for k, n in enumerate(src) if n == 1}, ctx)
  keep_dst = [k for k, n in enumerate(dst) if n != 1]
  groups, si, di = [], 0, 0
  while si < len(keep_src) and di < len(keep_dst):
    gs, gd = [keep_src[si]], [keep_dst[di]]
    ps, pd = src[keep_src[si]], dst[keep_dst[di]]
    si, di = si + 1, di + 1
    while ps != pd:
      if ps < pd:
        gs.append(keep_src[si])
        ps, si = ps * src[keep_src[si]], si + 1
      else:
        gd.append(keep_dst[di])
        pd, di = pd * dst[keep_dst[di]], di + 1
    groups.append((gs, gd))
  out = {}
  for i, a in t.items():
    new: list = [frozenset()] * len(dst)
    for gs, gd in groups:
      merged = frozenset().union(*[a[k] for k in gs])
      for k in gd:
        new[k] = merged
    out[i] = tuple(new)
  return out


def _union(*ts) -> Optional[dict]:
  out: dict = {}
  for t in ts:
    for i, a in (t or {}).items():
      prev = out.get(i)
      out[i] = a if prev is None or len(prev) != len(a) else tuple(x | y for x, y in zip(prev, a))
  return out or None


def _elementwise(eqn, ins, ctx) -> Optional[dict]:
  """A leaf scaled by a constant stays a leaf; against an activation it is a vector use."""
  others = [v for v, t in zip(eqn.invars, ins) if not t]
  scalar = lambda v: literal(v) or int(np.prod(v.aval.shape)) == 1
  if all(scalar(v) for v in others):
    return _union(*[t for t in ins if t])
  for t in ins:
    for leaf in t or ():
      ctx.facts[leaf].elementwise = True
  return None


def _dot(eqn, ins, ctx) -> None:
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  both = ins[0] and ins[1]
  for t, contract, batch in ((ins[0], lc, lb), (ins[1], rc, rb)):
    for leaf, a in (t or {}).items():
      if both:  # a product of two parameters: neither's fan-in is known
        ctx.facts[leaf].unknown.add("dot_general with another parameter")
        continue
      ctx.facts[leaf].contracted.append(frozenset().union(*[a[k] for k in contract]))
      ctx.products[id(eqn)] = leaf
      ctx.facts[leaf].layers.update(*[a[k] for k in batch])


def _conv(eqn, ins, ctx) -> list:
  dn = eqn.params["dimension_numbers"]
  if ins[0]:
    for leaf in ins[0]:
      ctx.facts[leaf].unknown.add("conv_general_dilated (as the input)")
  rhs = dn.rhs_spec  # (out feature, in feature, *spatial)
  for leaf, a in (ins[1] or {}).items():
    ctx.facts[leaf].contracted.append(frozenset().union(*[a[k] for k in rhs[1:]]))
    ctx.products[id(eqn)] = leaf
  return [None]


def _gather(eqn, ins, ctx) -> Optional[dict]:
  """Many entries looked up: an embedding. One entry (W[i] with a traced i): a layer."""
  dn = eqn.params["dimension_numbers"]
  operand, indices = ins[0], ins[1]
  if indices:
    for leaf in indices:
      ctx.facts[leaf].unknown.add("gather (as indices)")
  if not operand:
    return None
  idx_shape = tuple(eqn.invars[1].aval.shape)
  lookups = int(np.prod(idx_shape[:-1])) if idx_shape else 1
  looked = dn.start_index_map
  if lookups > 1:
    for leaf, a in operand.items():
      ctx.facts[leaf].looked_up.append(frozenset().union(*[a[k] for k in looked]))
    return None
  _layers_dropped(operand, set(dn.collapsed_slice_dims), ctx)
  kept = [k for k in range(len(eqn.invars[0].aval.shape)) if k not in dn.collapsed_slice_dims]
  out_rank = len(eqn.outvars[0].aval.shape)
  out = {}
  for leaf, a in operand.items():
    new: list = [frozenset()] * out_rank
    for src, dst in zip(kept, dn.offset_dims):
      new[dst] = a[src]
    out[leaf] = tuple(new)
  return out


def _scan(eqn, ins, ctx) -> list:
  """xs are sliced on their first axis: a layer axis of the leaves they carry."""
  p = eqn.params
  n_in = p["num_consts"] + p["num_carry"]
  inner = list(ins[:n_in])
  for t in ins[n_in:]:
    if t:
      _layers_dropped(t, {0}, ctx)
      t = {i: a[1:] for i, a in t.items()}
    inner.append(t)
  outs = _walk(p["jaxpr"].jaxpr, inner, ctx)
  n_carry = p["num_carry"]
  ys = [None if not t else {i: (frozenset(),) + a for i, a in t.items()} for t in outs[n_carry:]]
  return outs[:n_carry] + ys
