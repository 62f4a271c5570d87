"""The 2-hidden-layer MLP of Tensor Programs V, for image classification."""

import jax
import jax.numpy as jnp
from flax import nnx

from adamlab.models.layers import Dense, dropout, fold, record


class MLP(nnx.Module):
  def __init__(self, cfg, parametrization: str, dtype):
    del parametrization  # everything width-dependent is in the table
    d = cfg.width
    self.dropout = cfg.get("dropout", 0.0)
    self.layers = nnx.List(
      [
        Dense(cfg.input_dim, d, ("input", "embed"), use_bias=cfg.use_bias, dtype=dtype),
        Dense(d, d, ("embed", "mlp"), use_bias=cfg.use_bias, dtype=dtype),
      ]
    )
    self.readout = Dense(
      d,
      cfg.num_classes,
      ("mlp", "classes"),
      use_bias=cfg.use_bias,
      init="zeros" if cfg.zero_init_readout else "normal",
      dtype=dtype,
    )

  def __call__(self, images, dropout_key=None):
    x = images.reshape(images.shape[0], -1)
    for i, layer in enumerate(self.layers):
      x = record(f"hidden{i}", jax.nn.relu(layer(x)))
      x = dropout(x, self.dropout, fold(dropout_key, i))
    return record("logits", self.readout(x).astype(jnp.float32))
