"""The coordinate check of Tensor Programs V on a user's own model, with no hooks.

The layers are read from the same trace as `parametrize(apply=)`: every contraction
(`dot_general`, convolution) that multiplies a parameter is a layer, named after that
parameter, and so is every value the model tags with
`jax.ad_checkpoint.checkpoint_name(x, name)` (a residual stream, say), named by its
tag; `[i]` marks the i-th layer of a scan. A small interpreter evaluates the traced
forward and keeps each such output's RMS; scans are unrolled so that each stacked
layer is seen apart.
"""

import contextlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamlab.optim import _checks, _roles, _usage

_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "custom_jvp_call",
          "custom_vjp_call", "custom_vjp_call_jaxpr")  # fmt: skip


class CoordCheck(NamedTuple):
  """What `coord_check` measured.

  Attributes:
    widths: the widths, ascending.
    layers: each layer's name (its parameter's, with [i] inside a scan).
    rms: float array (steps + 1, widths, layers): step 0 at init, step t after t
      updates.
    slopes: {layer: slope of log2 rms against log2 width at the last step}.
  """

  widths: tuple
  layers: tuple
  rms: np.ndarray
  slopes: dict


LAYERS = ("all", "products", "named")


def coord_check(
  setup: Callable[[int], tuple], widths, steps: int = 3, layers: str = "all"
) -> CoordCheck:
  r"""Each layer's output RMS over a few optimizer steps, at several widths.

  Under muP every layer's output stays Theta(1) as the width grows, so the slope of
  log2 RMS against log2 width is near 0; under SP with Adam the readout's grows
  (Yang et al. 2022, Tensor Programs V, Figure 5). The equivalent of microsoft/mup's
  `get_coord_data`: the layers come from the forward's trace, so the model needs no
  hooks.

  .. math::

    \text{slope}_\ell = \frac{d \log_2 \text{RMS}(h_\ell)}{d \log_2 n}

  Args:
    setup: setup(width) -> (forward, loss, params, tx): forward(params) is the model
      at that width on a fixed batch (what `parametrize(apply=)` takes), loss(params)
      the scalar it trains on, params the initial params, tx an Optax transform.
    widths: at least two distinct positive widths.
    steps: optimizer steps, >= 0 (the records of step t are taken before update t+1).
    layers: "products" (every contraction with a parameter), "named" (every value
      tagged with `jax.ad_checkpoint.checkpoint_name`) or "all" (both).

  Returns:
    A `CoordCheck`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from adamlab import optim
    >>> x = jnp.ones((8, 4))
    >>> shapes = lambda n: {"w_in": jnp.zeros((4, n)), "w_out": jnp.zeros((n, 2))}
    >>> def setup(n):
    ...   fwd = lambda p: jnp.tanh(x @ p["w_in"]) @ p["w_out"]
    ...   table = optim.parametrize(base=shapes(8), target=shapes(n), apply=fwd)
    ...   model = lambda p: fwd(optim.apply_multipliers(table, p))
    ...   params = optim.init_params(table, shapes(n), jax.random.PRNGKey(0))
    ...   return model, lambda p: (model(p) ** 2).mean(), params, optim.adamw(
    ...     1e-2, parametrization=table)
    >>> cc = optim.coord_check(setup, (8, 32), steps=2)
    >>> cc.layers, cc.rms.shape
    (("params['w_in']", "params['w_out']"), (3, 2, 2))

  References:
    Yang et al. 2022, Tensor Programs V, arXiv:2203.03466 (the coordinate check).
  """
  widths = tuple(sorted(widths))
  if len(set(widths)) < 2 or any(not isinstance(w, int) or w < 1 for w in widths):
    _checks.fail("widths", widths, "at least two distinct integers >= 1")
  _checks.integer("steps", steps, 0)
  per_width = [_records_at(setup, w, steps, layers) for w in widths]
  names = per_width[0][0]
  for w, (found, _) in zip(widths, per_width):
    if found != names:
      _checks.fail_described(
        f"setup({w})", f"a model with layers {found}", f"the layers of setup({widths[0]})"
      )
  rms = np.stack([r for _, r in per_width], axis=1)  # (steps + 1, widths, layers)
  x = np.log2(np.asarray(widths, float))
  slopes = {k: float(np.polyfit(x, np.log2(rms[-1, :, i]), 1)[0]) for i, k in enumerate(names)}
  return CoordCheck(widths, names, rms, slopes)


def _records_at(setup, width, steps, layers):
  forward, loss, params, tx = setup(width)
  return coord_records(forward, loss, params, tx, steps=steps, layers=layers)


def coord_records(forward, loss, params, tx, steps: int = 3, layers: str = "all"):
  """The coordinate check of one model: `coord_check`'s measurement at one size.

  Args:
    forward: forward(params), the model on a fixed batch (closing over it).
    loss: loss(params), the scalar it trains on.
    params: the initial params.
    tx: an Optax transform; `update` is given `loss=` (`optax.with_extra_args_support`).
    steps: optimizer steps, >= 0.
    layers: "all", "products" or "named" (see `coord_check`).

  Returns:
    (layer names, float array (steps + 1, layers) of each layer's output RMS).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from jax.ad_checkpoint import checkpoint_name
    >>> from adamlab import optim
    >>> x, p = jnp.ones((4, 3)), {"w": jnp.full((3, 2), 0.5)}
    >>> fwd = lambda p: checkpoint_name(x @ p["w"], "out") + 1.0
    >>> names, rms = optim.coord_records(fwd, lambda p: fwd(p).sum(), p, optax.sgd(0.1), 1)
    >>> names, rms[0].tolist()
    (("params['w']", 'out'), [1.5, 1.5])
  """
  _checks.integer("steps", steps, 0)
  _checks.one_of("layers", layers, LAYERS)
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [_roles.leaf_name(p) for p, _ in leaves]
  found = _usage.trace(forward, params)
  keep = dict(all=("product", "name"), products=("product",), named=("name",))[layers]
  labels: list = []
  tx = optax.with_extra_args_support(tx)

  @jax.jit
  def step(p, state):
    """(params after one update, state, the records of p): one program to compile."""
    out = _evaluate(found, names, jax.tree.leaves(p), keep)
    labels[:] = [k for k, _ in out]  # (set while tracing: names are not arrays)
    value, grads = jax.value_and_grad(loss)(p)
    updates, state = tx.update(grads, state, p, loss=value)  # (skip_spikes reads it)
    return optax.apply_updates(p, updates), state, [v for _, v in out]

  state, rows = tx.init(params), []
  for _ in range(steps + 1):  # (the last update is not kept: only its records are)
    new_params, new_state, records = step(params, state)
    rows.append([float(v) for v in records])
    params, state = new_params, new_state
  return tuple(labels), np.asarray(rows)


def _evaluate(found, names, flat, keep) -> list:
  """[(layer, rms)] of the kept layers of the traced forward."""
  out: list = []
  closed = found.jaxpr
  label = lambda eqn: (
    names[found.products[id(eqn)]]
    if "product" in keep and id(eqn) in found.products
    else eqn.params["name"]
    if "name" in keep and eqn.primitive.name == "name"
    else None
  )
  _eval(closed.jaxpr, closed.consts, flat, label, "", out)
  seen: dict = {}
  for i, (k, v) in enumerate(out):  # a leaf used twice at one place: name#2
    seen[k] = seen.get(k, 0) + 1
    if seen[k] > 1:
      out[i] = (f"{k}#{seen[k]}", v)
  return out


def _eval(jaxpr, consts, args, label, suffix, out) -> list:
  env = dict(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  read = lambda v: v.val if _usage.literal(v) else env[v]
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    outs = _eval_eqn(eqn, ins, label, suffix, out)
    name = label(eqn)
    if name is not None:
      y = outs[0].astype(jnp.float32)
      out.append((name + suffix, jnp.sqrt(jnp.mean(y * y))))
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars]


def _eval_eqn(eqn, ins, label, suffix, out) -> list:
  name, p = eqn.primitive.name, eqn.params
  if name == "scan":
    return _unrolled_scan(p, ins, label, suffix, out)
  body = _usage.call_body(eqn) if name in _CALLS else None
  if body is not None:  # (inlined, so the records inside are seen)
    return _eval(*body, ins, label, suffix, out)
  bind = eqn.primitive.get_bind_params(p)  # (subfuns, params) before JAX 0.7, then params
  subfuns, params = bind if isinstance(bind, tuple) else ((), bind)
  with eqn.ctx.manager if hasattr(eqn, "ctx") else contextlib.nullcontext():
    result = eqn.primitive.bind(*subfuns, *ins, **params)
  return list(result) if eqn.primitive.multiple_results else [result]


def _unrolled_scan(p, ins, label, suffix, out) -> list:
  nc, ncarry = p["num_consts"], p["num_carry"]
  consts, carry, xs = ins[:nc], ins[nc : nc + ncarry], ins[nc + ncarry :]
  body = p["jaxpr"]
  order = range(p["length"] - 1, -1, -1) if p["reverse"] else range(p["length"])
  ys: dict = {}
  for i in order:
    args = consts + carry + [x[i] for x in xs]
    res = _eval(body.jaxpr, body.consts, args, label, f"{suffix}[{i}]", out)
    carry, ys[i] = res[:ncarry], res[ncarry:]
  n_ys = len(body.jaxpr.outvars) - ncarry
  return list(carry) + [jnp.stack([ys[i][k] for i in range(p["length"])]) for k in range(n_ys)]
