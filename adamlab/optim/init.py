"""Initialize a user's params from a table and apply its forward multipliers."""

from typing import Any

import jax
import jax.numpy as jnp

from adamlab.optim._checks import fail_described
from adamlab.optim._roles import leaf_name
from adamlab.optim.table import check_params, is_scale


def init_params(table: Any, params: Any, key: jax.Array) -> Any:
  r"""Params initialized from a parametrization table.

  Matrices and embeddings are drawn from N(0, init_std^2), each stacked layer at the
  single layer's std. Vectors (gains, biases, scalars; a stacked (layers, d) gain too
  when the table was built with `apply`) keep the model's own initial value v as their
  effective value: stored v / multiplier, so biases stay 0 and norm gains start at an
  effective 1 in every parametrization. An integer leaf is an error: it is no weight.

  .. math::

    W \sim \mathcal{N}(0, \sigma^2), \qquad b = v / \text{multiplier}

  Args:
    table: a table from `parametrize`, built for these params.
    params: the model's initialized params (their dtypes and vector values are kept).
    key: a `jax.random` key; leaf i draws from `fold_in(key, i)`.

  Returns:
    A tree like `params`.

  Raises:
    ValueError: naming the leaf, if the params do not have the structure or shapes
      the table was built for.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w": jnp.zeros((n, n)), "b": jnp.zeros((n,)),
    ...                  "scale": jnp.ones((n,))}
    >>> table = optim.parametrize(base=mlp(64), target=mlp(256))
    >>> p = optim.init_params(table, mlp(256), jax.random.PRNGKey(0))
    >>> round(float(p["w"].std()), 3), float(p["b"].max()), float(p["scale"][0])
    (0.062, 0.0, 0.5)

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872.
  """
  check_params(table, params)
  leaves, treedef = jax.tree.flatten(params)
  scales = treedef.flatten_up_to(table)  # type: ignore[attr-defined]
  out = []
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for i, (p, s) in enumerate(zip(leaves, scales)):
    p = jnp.asarray(p)
    if not jnp.issubdtype(p.dtype, jnp.inexact):
      fail_described(
        leaf_name(paths[i]), f"of dtype {p.dtype}", "a float leaf (a weight to initialize)"
      )
    if s.kind != "vector":
      out.append(s.init_std * jax.random.normal(jax.random.fold_in(key, i), p.shape, p.dtype))
    else:
      out.append((p / s.multiplier).astype(p.dtype))
  return jax.tree.unflatten(treedef, out)


def apply_multipliers(table: Any, params: Any) -> Any:
  r"""The effective params a model computes with: multiplier * stored value.

  .. math::

    W_{\text{eff}} = m^{-a} \, W

  Call it inside the loss, on the params the optimizer updates; gradients flow to the
  stored values through the multipliers. A tied embedding used as the readout needs
  `readout_multiplier / multiplier` of its leaf on the logits as well.

  Args:
    table: a table from `parametrize`.
    params: the stored params (arrays or tracers).

  Returns:
    A tree like `params`; leaves whose multiplier is 1 are returned as they are.

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.ones((4, n)), "w_out": jnp.ones((n, 2))}
    >>> table = optim.parametrize(base=mlp(8), target=mlp(32))
    >>> eff = optim.apply_multipliers(table, mlp(32))
    >>> float(eff["w_in"][0, 0]), float(eff["w_out"][0, 0])
    (2.0, 0.5)

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872.
  """
  check_params(table, params)
  return jax.tree.map(
    lambda s, p: p if s.multiplier == 1.0 else p * s.multiplier, table, params, is_leaf=is_scale
  )
