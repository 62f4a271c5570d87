"""Multi-head attention, the transformer block and the stack of blocks shared by GPT and ViT.

The stack can rematerialize each block in the backward pass (`model.remat`, the
checkpointing options of Kakade and Vyas's optimization notes) and run the blocks as
one `lax.scan` (`model.scan_layers`). Either way the blocks stay stored one by one
(`blocks.0`, `blocks.1`, ...), so parameter names, sharding axes, the
parametrization table and checkpoints do not depend on the switches.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from adamlab import optim
from adamlab.models.layers import Dense, LayerNorm, dropout, fold, record
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
    return base_hd**-0.5 * base_hd / hd
  return hd**-0.5


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

  def __call__(self, x, prefix=""):
    b, t, d = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3 * self.heads, d // self.heads), 3, axis=2)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    if self.rotary:
      pos = jnp.arange(t)
      q, k = rotary(q, pos), rotary(k, pos)
    y = jax.nn.dot_product_attention(q, k, v, scale=self.scale, is_causal=self.causal)
    y = record(prefix + "attn", y)
    return self.out(y.reshape(b, t, d))


class MLP(nnx.Module):
  """GELU 4x, or SwiGLU (same parameter count per hidden unit pair)."""

  def __init__(self, cfg, dtype):
    d, hidden = cfg.width, cfg.mlp_ratio * cfg.width
    self.swiglu = cfg.mlp == "swiglu"
    self.up = Dense(d, (2 if self.swiglu else 1) * hidden, ("embed", "mlp"), dtype=dtype)
    self.down = Dense(hidden, d, ("mlp", "embed"), dtype=dtype)

  def __call__(self, x, prefix=""):
    h = self.up(x)
    if self.swiglu:
      gate, up = jnp.split(h, 2, axis=-1)
      h = jax.nn.silu(gate) * up
    else:
      h = jax.nn.gelu(h)
    h = record(prefix + "mlp_hidden", h)
    return self.down(h)


class Block(nnx.Module):
  """Pre-LayerNorm transformer block; dropout on both residual branches when training."""

  def __init__(self, cfg, dtype, causal: bool, scale: float):
    self.norm1 = LayerNorm(cfg.width, "embed")
    self.attn = Attention(cfg, dtype, causal, scale)
    self.norm2 = LayerNorm(cfg.width, "embed")
    self.mlp = MLP(cfg, dtype)
    self.dropout = cfg.get("dropout", 0.0)
    self.branch = branch_multiplier(cfg)

  def __call__(self, x, prefix="", dropout_key=None):
    keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
    x = x + self._scaled(dropout(self.attn(self.norm1(x), prefix), self.dropout, keys[0]))
    x = x + self._scaled(dropout(self.mlp(self.norm2(x), prefix), self.dropout, keys[1]))
    return record(prefix + "out", x)

  def _scaled(self, y):
    # (1.0 at the base depth: not even a multiply, so such a model is today's bit for bit)
    return y if self.branch == 1.0 else y * jnp.asarray(self.branch, y.dtype)


def depth_rule(cfg) -> dict:
  """The depth arguments of optim.parametrize for a model section: none when
  model.base_depth is unset or model.alpha is 0 (standard practice)."""
  if cfg.get("base_depth") is None or not cfg.get("alpha", 0.0):
    return {}
  return dict(depth=cfg.depth, base_depth=cfg.base_depth, alpha=cfg.alpha)


def branch_multiplier(cfg) -> float:
  """(depth / base_depth)^-alpha: what every residual branch's output is multiplied by."""
  rule = depth_rule(cfg)
  return optim.branch_multiplier(**rule) if rule else 1.0


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


# What each block keeps for the backward pass (JAX's named checkpoint policies).
REMAT = {
  "none": None,  # whatever autodiff saves
  # Option 1: only the block's input (the checkpoint's argument); the rest is recomputed.
  "block": jax.checkpoint_policies.nothing_saveable,
  # Option 2: the projections x @ W, which have no batch dimensions; the batched
  # q.k^T and probs @ v are recomputed, so no T x T probabilities are kept.
  "no_attention": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def block_fn(graphdef, remat: str, scanned: bool, prefix: str = ""):
  """apply(state, x, key) -> x of one block, rematerialized as `remat` says; its
  coordinate-check tags start with `prefix` (a scan's are told apart by the trace)."""

  def apply(state, x, key):
    return nnx.merge(graphdef, state)(x, prefix, key)

  if remat == "none":
    return apply
  # prevent_cse keeps XLA from merging the recomputation back into the forward pass;
  # a scan's loop keeps them apart already, and the guard costs fusion.
  return jax.checkpoint(apply, policy=REMAT[remat], prevent_cse=not scanned)


def run_blocks(blocks, x, dropout_key=None, remat="none", scan=False):
  """x through every block; block i draws dropout from fold_in(dropout_key, i)."""
  if scan:
    return _scan_blocks(blocks, x, dropout_key, remat)
  for i, block in enumerate(blocks):
    if remat == "none":
      x = block(x, f"block{i}.", fold(dropout_key, i))
    else:
      graphdef, state = nnx.split(block)
      x = block_fn(graphdef, remat, False, f"block{i}.")(state, x, fold(dropout_key, i))
  return x


def _scan_blocks(blocks, x, dropout_key, remat):
  """One traced block, scanned over the blocks' parameters stacked on a leading axis."""
  graphdef, _ = nnx.split(blocks[0])
  states = []
  for block in blocks:
    g, state = nnx.split(block)
    if g != graphdef:  # one traced body: the blocks must share structure and multipliers
      raise ValueError("model.scan_layers needs blocks of one structure and multipliers")
    states.append(state)
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
  apply = block_fn(graphdef, remat, True)

  def body(x, layer):
    i, state = layer
    key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
    return apply(state, x, key), None

  return jax.lax.scan(body, x, (jnp.arange(len(blocks)), stacked))[0]
