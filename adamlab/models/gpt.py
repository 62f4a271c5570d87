"""Decoder-only GPT: pre-LayerNorm, causal attention, GELU or SwiGLU MLP."""

import jax.numpy as jnp
from flax import nnx

from adamlab.models.attention import Block, attention_scale
from adamlab.models.layers import Dense, LayerNorm, param, record, value


class GPT(nnx.Module):

  def __init__(self, cfg, parametrization: str, dtype):
    d = cfg.width
    self.embed = param((cfg.vocab_size, d), "normal", ("vocab", "embed"))
    self.pos_embed = (param((cfg.seq_len, d), "normal", ("seq", "embed"))
                      if cfg.positions == "learned" else None)
    scale = attention_scale(cfg, parametrization)
    self.blocks = nnx.List([Block(cfg, dtype, True, scale) for _ in range(cfg.depth)])
    self.final_norm = LayerNorm(d, "embed")
    self.readout = Dense(d, cfg.vocab_size, ("embed", "vocab"),
                         init="zeros" if cfg.zero_init_readout else "normal", dtype=dtype)
    self.dtype = dtype

  def __call__(self, tokens, records=None):
    x = jnp.take(value(self.embed, self.dtype), tokens, axis=0)
    if self.pos_embed is not None:
      x = x + value(self.pos_embed, self.dtype)[: tokens.shape[1]]
    record(records, "embed", x)
    for i, block in enumerate(self.blocks):
      x = block(x, records, f"block{i}.")
    return record(records, "logits", self.readout(self.final_norm(x)).astype(jnp.float32))
