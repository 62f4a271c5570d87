"""Deterministic, resumable batch sources: text (GCIDE, user files) and images (Fashion-MNIST)."""

import os

import ml_collections
import numpy as np

from adamlab.data import images, text
from adamlab.data.download import PACKAGES, data_dir, fetch
from adamlab.errors import ConfigError

DATASETS = ("gcide", "fashion_mnist", "text", "idx", "npz")


def default_config() -> ml_collections.ConfigDict:
  """The `data` section of an experiment config."""
  return ml_collections.ConfigDict(dict(
      name="gcide",  # gcide, fashion_mnist, or a user file: text (text/.npy/.bin), idx, npz
      path="",  # user data: a text/.npy/.bin file, an .npz, or a folder of IDX files
      dir="",  # data directory of `adamlab data fetch` (default $ADAMLAB_DATA or ./data)
      eval_fraction=0.05,  # text: held-out fraction at the end of the corpus
      train_size=0,  # train on the first N examples only (images, or text windows of seq_len); 0 = all
      full_batch=False,  # every step's batch is the whole train_size subset, in order
  ))


class Source:
  """batch(step) and eval_batch(i) as pure functions of (seed, step): no iterator state."""

  def __init__(self, config):
    cfg, model = config.data, config.model
    if cfg.name not in DATASETS:
      raise ConfigError("data.name", cfg.name, DATASETS)
    self.seed, self.batch_size = config.seed, config.batch_size
    self.full_batch = check_subset(config)
    self.kind = "text" if cfg.name in ("gcide", "text") else "images"
    wants = "text" if model.name == "gpt" else "images"
    if self.kind != wants:
      raise ConfigError("data.name", cfg.name, f"a {wants} data set for model {model.name!r}")
    if self.kind == "text":
      path = (os.path.join(data_dir(cfg.dir), "gcide", "gcide.dict.dz") if cfg.name == "gcide"
              else cfg.path)
      tokens = text.load_tokens(path)
      if not 0 < cfg.eval_fraction < 1:
        raise ConfigError("data.eval_fraction", cfg.eval_fraction, "in (0, 1)")
      self.train, self.eval = text.split(tokens, cfg.eval_fraction)
      self.seq_len = model.seq_len
      if cfg.train_size:
        self.train = self.train[:_fits(cfg.train_size, (len(self.train) - 1) // model.seq_len,
                                       "text windows of model.seq_len") * model.seq_len + 1]
      top = int(np.max(tokens))
      if top >= model.vocab_size:
        raise ConfigError("model.vocab_size", model.vocab_size, f"> the largest token id ({top})")
    else:
      if cfg.name == "fashion_mnist":
        parts = images.load_fashion_mnist(data_dir(cfg.dir))
      elif cfg.name == "idx":
        parts = images.load_idx_folder(cfg.path)
      else:
        parts = images.load_npz(cfg.path)
      self.train, self.eval = parts["train"], parts["eval"]
      if cfg.train_size:
        n = _fits(cfg.train_size, len(self.train[0]), "training images")
        self.train = tuple(a[:n] for a in self.train)
      x = self.train[0]
      if model.name == "vit" and x.shape[1:] != (model.image_size, model.image_size, model.channels):
        raise ConfigError("model.image_size", model.image_size,
                          f"the data's image shape {x.shape[1:]} (with model.channels)")
      if model.name == "mlp" and int(np.prod(x.shape[1:])) != model.input_dim:
        raise ConfigError("model.input_dim", model.input_dim, f"{int(np.prod(x.shape[1:]))}")

  def batch(self, step: int, rows=None):
    if self.kind == "text":
      return text.batch(self.train, step, self.seed, self.batch_size, self.seq_len, rows,
                        self.full_batch)
    return images.batch(*self.train, step, self.seed, self.batch_size, rows, self.full_batch)

  def eval_batch(self, i: int, rows=None):
    """The i-th held-out batch (the same at every evaluation)."""
    if self.kind == "text":
      return text.batch(self.eval, i, self.seed + 1, self.batch_size, self.seq_len, rows)
    x, y = self.eval
    idx = (np.arange(self.batch_size) + i * self.batch_size) % len(x)
    if rows is not None:
      idx = idx[rows]
    return x[idx], y[idx]


def check_subset(config) -> bool:
  """Check data.train_size and data.full_batch; returns full_batch."""
  cfg = config.data
  size, full = cfg.train_size, cfg.full_batch
  if not isinstance(size, int) or isinstance(size, bool) or size < 0:
    raise ConfigError("data.train_size", size, "an integer >= 0 (0 = the whole training set)")
  if not isinstance(full, bool):
    raise ConfigError("data.full_batch", full, "True or False")
  if full and size != config.batch_size:
    raise ConfigError("data.full_batch", full,
                      f"False, or data.train_size equal to batch_size ({config.batch_size})")
  return full


def _fits(size: int, available: int, what: str) -> int:
  if size > available:
    raise ConfigError("data.train_size", size, f"<= {available} ({what} in the training split)")
  return size
