"""Decoder-only GPT: pre-LayerNorm, causal attention, GELU or SwiGLU MLP."""

import jax.numpy as jnp
from flax import nnx

from adamlab.models.attention import Block, attention_scale, run_blocks
from adamlab.models.layers import Dense, LayerNorm, param, record, value


class GPT(nnx.Module):
  def __init__(self, cfg, parametrization: str, dtype):
    d = cfg.width
    self.embed = param((cfg.vocab_size, d), "normal", ("vocab", "embed"))
    self.tied = cfg.get("tied_embeddings", False)
    if self.tied:  # the readout is embed^T times the output role's multiplier
      self.embed.set_metadata(tied_output=1.0)
    self.pos_embed = (
      param((cfg.seq_len, d), "normal", ("seq", "embed")) if cfg.positions == "learned" else None
    )
    scale = attention_scale(cfg, parametrization)
    self.blocks = nnx.List([Block(cfg, dtype, True, scale) for _ in range(cfg.depth)])
    self.remat = cfg.get("remat", "none")  # what a block keeps for the backward pass
    self.scan_layers = cfg.get("scan_layers", False)  # the blocks as one lax.scan
    self.final_norm = LayerNorm(d, "embed")
    self.readout = (
      None
      if self.tied
      else Dense(
        d,
        cfg.vocab_size,
        ("embed", "vocab"),
        init="zeros" if cfg.zero_init_readout else "normal",
        dtype=dtype,
      )
    )
    self.dtype = dtype

  def __call__(self, tokens, dropout_key=None):
    x = jnp.take(value(self.embed, self.dtype), tokens, axis=0)
    if self.pos_embed is not None:
      x = x + value(self.pos_embed, self.dtype)[: tokens.shape[1]]
    x = record("embed", x)
    x = run_blocks(self.blocks, x, dropout_key, self.remat, self.scan_layers)
    x = self.final_norm(x)
    if self.tied:
      e = self.embed
      w = e[...].astype(self.dtype) * jnp.asarray(e.get_metadata("tied_output"), self.dtype)
      logits = x.astype(self.dtype) @ w.T
    else:
      logits = self.readout(x)
    return record("logits", logits.astype(jnp.float32))
