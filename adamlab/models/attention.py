"""Multi-head attention and the transformer block shared by GPT and ViT."""

import jax
import jax.numpy as jnp
from flax import nnx

from adamlab.models.layers import Dense, LayerNorm, dropout, record
from adamlab.errors import ConfigError

# Parametrizations in the muP class (a + b = 1 at the readout) use 1/head_dim
# attention logits: with feature learning, q and k become correlated and q.k grows
# like head_dim, not sqrt(head_dim).
LINEAR_ATTENTION = ("mup", "mup_tp5", "mfp")


def head_dim(cfg, width: int) -> int:
  """model.head_dim if set (heads then grow with width), else width / model.num_heads."""
  return cfg.get("head_dim") or width // cfg.num_heads


def attention_scale(cfg, parametrization: str) -> float:
  """1/sqrt(head_dim) (SP, NTK) or 1/head_dim times a constant equal at base width (muP)."""
  hd, base_hd = head_dim(cfg, cfg.width), head_dim(cfg, cfg.base_width)
  if parametrization in LINEAR_ATTENTION:
    return base_hd ** -0.5 * base_hd / hd
  return hd ** -0.5


def rotary(x, positions):
  """Rotary position embedding on the last axis of (batch, seq, heads, head_dim)."""
  half = x.shape[-1] // 2
  freq = 10000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions[:, None].astype(jnp.float32) * freq[None, :]
  sin, cos = jnp.sin(angle)[None, :, None, :], jnp.cos(angle)[None, :, None, :]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).astype(x.dtype)


class Attention(nnx.Module):

  def __init__(self, cfg, dtype, causal: bool, scale: float):
    d, hd = cfg.width, head_dim(cfg, cfg.width)
    self.heads = d // hd
    self.qkv = Dense(d, 3 * d, ("embed", "qkv"), dtype=dtype)
    self.out = Dense(d, d, ("heads", "embed"), dtype=dtype)
    self.q_norm = LayerNorm(hd, "head_dim") if cfg.qk_layernorm else None
    self.k_norm = LayerNorm(hd, "head_dim") if cfg.qk_layernorm else None
    self.rotary = cfg.get("positions", "learned") == "rotary"
    self.scale = scale
    self.causal = causal

  def __call__(self, x, records=None, prefix=""):
    b, t, d = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3 * self.heads, d // self.heads), 3, axis=2)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    if self.rotary:
      pos = jnp.arange(t)
      q, k = rotary(q, pos), rotary(k, pos)
    y = jax.nn.dot_product_attention(q, k, v, scale=self.scale, is_causal=self.causal)
    record(records, prefix + "attn", y)
    return self.out(y.reshape(b, t, d))


class MLP(nnx.Module):
  """GELU 4x, or SwiGLU (same parameter count per hidden unit pair)."""

  def __init__(self, cfg, dtype):
    d, hidden = cfg.width, cfg.mlp_ratio * cfg.width
    self.swiglu = cfg.mlp == "swiglu"
    self.up = Dense(d, (2 if self.swiglu else 1) * hidden, ("embed", "mlp"), dtype=dtype)
    self.down = Dense(hidden, d, ("mlp", "embed"), dtype=dtype)

  def __call__(self, x, records=None, prefix=""):
    h = self.up(x)
    if self.swiglu:
      gate, up = jnp.split(h, 2, axis=-1)
      h = jax.nn.silu(gate) * up
    else:
      h = jax.nn.gelu(h)
    record(records, prefix + "mlp_hidden", h)
    return self.down(h)


class Block(nnx.Module):
  """Pre-LayerNorm transformer block; dropout on both residual branches when training."""

  def __init__(self, cfg, dtype, causal: bool, scale: float):
    self.norm1 = LayerNorm(cfg.width, "embed")
    self.attn = Attention(cfg, dtype, causal, scale)
    self.norm2 = LayerNorm(cfg.width, "embed")
    self.mlp = MLP(cfg, dtype)
    self.dropout = cfg.get("dropout", 0.0)

  def __call__(self, x, records=None, prefix="", dropout_key=None):
    keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
    x = x + dropout(self.attn(self.norm1(x), records, prefix), self.dropout, keys[0])
    x = x + dropout(self.mlp(self.norm2(x), records, prefix), self.dropout, keys[1])
    return record(records, prefix + "out", x)


def check_heads(cfg):
  """Heads (or the head size) must divide the width at the target and at the base width."""
  by, name = (cfg.head_dim, "head_dim") if cfg.get("head_dim") else (cfg.num_heads, "num_heads")
  if cfg.get("head_dim") is not None and cfg.head_dim < 1:
    raise ConfigError("model.head_dim", cfg.head_dim, "None or an integer >= 1")
  for field in ("width", "base_width"):
    if cfg[field] % by:
      raise ConfigError(f"model.{field}", cfg[field], f"a multiple of model.{name} ({by})")
  if cfg.get("positions", "learned") == "rotary" and head_dim(cfg, cfg.width) % 2:
    raise ConfigError("model.width", cfg.width, "such that the head size is even (rotary)")
