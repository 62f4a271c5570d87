"""Vision Transformer: a named patch embedding (its RMS_t is tracked), pre-LN blocks, a head."""

import jax.numpy as jnp
from flax import nnx

from adamlab.models.attention import Block, attention_scale, run_blocks
from adamlab.models.layers import Dense, LayerNorm, param, record, value


def patchify(images, patch: int):
  """(batch, H, W, C) -> (batch, H/p * W/p, p * p * C)."""
  b, h, w, c = images.shape
  x = images.reshape(b, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class ViT(nnx.Module):
  def __init__(self, cfg, parametrization: str, dtype):
    d, p = cfg.width, cfg.patch_size
    self.patch = p
    tokens = (cfg.image_size // p) ** 2
    self.patch_embed = Dense(
      p * p * cfg.channels, d, ("patch", "embed"), use_bias=True, dtype=dtype
    )
    self.cls = param((d,), "normal", ("embed",)) if cfg.pool == "cls" else None
    self.pos_embed = param((tokens + (cfg.pool == "cls"), d), "normal", ("seq", "embed"))
    scale = attention_scale(cfg, parametrization)
    self.blocks = nnx.List([Block(cfg, dtype, False, scale) for _ in range(cfg.depth)])
    self.remat = cfg.get("remat", "none")  # what a block keeps for the backward pass
    self.scan_layers = cfg.get("scan_layers", False)  # the blocks as one lax.scan
    self.final_norm = LayerNorm(d, "embed")
    self.head = Dense(
      d,
      cfg.num_classes,
      ("embed", "classes"),
      init="zeros" if cfg.zero_init_readout else "normal",
      dtype=dtype,
    )
    self.dtype = dtype

  def __call__(self, images, dropout_key=None):
    x = self.patch_embed(patchify(images.astype(self.dtype), self.patch))
    if self.cls is not None:
      cls = jnp.broadcast_to(value(self.cls, self.dtype), (x.shape[0], 1, x.shape[-1]))
      x = jnp.concatenate([cls, x], axis=1)
    x = record("patch_embed", x + value(self.pos_embed, self.dtype))
    x = run_blocks(self.blocks, x, dropout_key, self.remat, self.scan_layers)
    x = self.final_norm(x)
    x = x[:, 0] if self.cls is not None else x.mean(axis=1)
    return record("logits", self.head(x).astype(jnp.float32))
