"""Layers whose width-dependent numbers come from the parametrization table.

Each parameter is an `nnx.Param` with metadata: `init` (normal, zeros or ones), `axes`
(logical axis names for sharding) and `multiplier` (the forward multiplier). Layers
are built with placeholder values; `build.apply_table` then sets every value and
multiplier from `adamlab.optim.parametrize`, so model and optimizer share one table.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name


def param(shape, init: str, axes) -> nnx.Param:
  """A parameter whose value and multiplier are set later from the table."""
  assert len(axes) == len(shape), (shape, axes)
  return nnx.Param(jnp.zeros(shape, jnp.float32), init=init, axes=tuple(axes), multiplier=1.0)


def value(p: nnx.Param, dtype) -> jax.Array:
  """The effective parameter: multiplier * stored value, in the compute dtype."""
  m = p.get_metadata("multiplier")
  v = p[...].astype(dtype)
  return v if m == 1.0 else v * jnp.asarray(m, dtype)


class Dense(nnx.Module):
  """y = x @ (multiplier * kernel) + bias. Kernel (fan_in, fan_out): last axis fan-out."""

  def __init__(
    self,
    fan_in: int,
    fan_out: int,
    axes,
    *,
    use_bias: bool = False,
    init: str = "normal",
    dtype=jnp.float32,
  ):
    self.kernel = param((fan_in, fan_out), init, axes)
    self.bias = param((fan_out,), "zeros", axes[-1:]) if use_bias else None
    self.dtype = dtype

  def __call__(self, x):
    y = x.astype(self.dtype) @ value(self.kernel, self.dtype)
    return y if self.bias is None else y + value(self.bias, self.dtype)


class LayerNorm(nnx.Module):
  """LayerNorm in float32 with a learned scale and bias."""

  def __init__(self, dim: int, axis_name: str, eps: float = 1e-6):
    self.scale = param((dim,), "ones", (axis_name,))
    self.bias = param((dim,), "zeros", (axis_name,))
    self.eps = eps

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * value(self.scale, jnp.float32) + value(self.bias, jnp.float32)).astype(x.dtype)


def record(name: str, x):
  """x, tagged `name` for the coordinate check (`optim.coord_records` finds the tag in
  the traced forward): nothing is threaded through the model, and under jit the tag
  costs nothing."""
  return checkpoint_name(x, name)


def dropout(x, rate: float, key):
  """Inverted dropout; the identity at rate 0 or without a key (evaluation)."""
  if not rate or key is None:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def fold(key, i: int):
  """A per-layer dropout key (None stays None)."""
  return None if key is None else jax.random.fold_in(key, i)
