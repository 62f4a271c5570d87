"""What kind of model a config trains: a language model or a classifier.

This is the one place that asks. A task owns what differs between the two: the
objective, the data kind it reads, the items a step trains on (tokens or examples),
the FLOPs of a step, a fixed batch for the coordinate check, and whether a data
set's examples fit the model.
"""

from typing import NamedTuple, Optional, Tuple

import jax
import numpy as np

from adamlab.errors import ConfigError
from adamlab.models.loss import accuracy, classification_loss, lm_loss


def _flops(batch_size, tokens, depth, width, n_params) -> float:
  """6 N per token (forward and backward), plus attention's 12 L T d."""
  return batch_size * tokens * (6 * n_params + 12 * depth * tokens * width)


class LanguageModel(NamedTuple):
  """Next-token prediction on text; a step trains on batch_size * seq_len tokens."""

  seq_len: int
  vocab_size: int
  depth: int
  width: int
  z_loss: float = 0.0
  data_kind: str = "text"

  def objective(self, apply):
    """loss(params, inputs, targets, dropout_key=None) -> (loss, {"accuracy"})."""

    def loss(params, inputs, targets, dropout_key=None):
      logits = apply(params, inputs, dropout_key)
      return lm_loss(logits, targets, self.z_loss), {"accuracy": accuracy(logits, targets)}

    return loss

  def items_per_step(self, batch_size: int) -> int:
    return batch_size * self.seq_len

  def flops_per_step(self, batch_size: int, n_params: int) -> float:
    return _flops(batch_size, self.seq_len, self.depth, self.width, n_params)

  def fixed_batch(self, batch_size: int, key):
    key, _ = jax.random.split(key)  # (the classifier's input key)
    tokens = jax.random.randint(key, (batch_size, self.seq_len + 1), 0, self.vocab_size)
    return tokens[:, :-1], tokens[:, 1:]

  def check_data(self, source) -> None:
    """The text source checks its token ids against vocab_size itself."""


class Classifier(NamedTuple):
  """Image classification; a step trains on batch_size examples.

  tokens: positions the blocks see per example (patches + class token; 1 without
  attention). image_shape: the (H, W, C) the model takes, or None when it takes
  flattened images of input_dim values.
  """

  num_classes: int
  input_dim: int
  image_shape: Optional[Tuple[int, int, int]]
  tokens: int = 1
  depth: int = 0
  width: int = 0
  data_kind: str = "images"

  def objective(self, apply):
    """loss(params, inputs, targets, dropout_key=None) -> (loss, {"accuracy"})."""

    def loss(params, inputs, targets, dropout_key=None):
      value, acc = classification_loss(apply(params, inputs, dropout_key), targets)
      return value, {"accuracy": acc}

    return loss

  def items_per_step(self, batch_size: int) -> int:
    return batch_size

  def flops_per_step(self, batch_size: int, n_params: int) -> float:
    return _flops(batch_size, self.tokens, self.depth, self.width, n_params)

  def fixed_batch(self, batch_size: int, key):
    k1, k2 = jax.random.split(key)
    shape = (batch_size,) + (self.image_shape or (self.input_dim,))
    return (
      jax.random.normal(k1, shape),
      jax.random.randint(k2, (batch_size,), 0, self.num_classes),
    )

  def check_data(self, source) -> None:
    """ConfigError unless the source's images have the shape the model takes."""
    shape = source.train[0].shape[1:]
    if self.image_shape is not None and shape != self.image_shape:
      raise ConfigError(
        "model.image_size",
        self.image_shape[0],
        f"the data's image shape {shape} (with model.channels)",
      )
    if self.image_shape is None and int(np.prod(shape)) != self.input_dim:
      raise ConfigError("model.input_dim", self.input_dim, f"{int(np.prod(shape))}")


def task(model):
  """The task of a config's `model` section."""
  if model.name == "gpt":
    return LanguageModel(
      model.seq_len, model.vocab_size, model.depth, model.width, model.get("z_loss", 0.0)
    )
  if model.name == "vit":
    side = model.image_size
    return Classifier(
      model.num_classes,
      side * side * model.channels,
      (side, side, model.channels),
      (side // model.patch_size) ** 2 + 1,
      model.depth,
      model.width,
    )
  return Classifier(model.num_classes, model.input_dim, None)
