"""Deterministic, resumable batch sources: text (GCIDE, user files) and images (Fashion-MNIST)."""

import os

import ml_collections

from adamlab.data import images, text
from adamlab.data.images import ImageSource
from adamlab.data.text import TextSource
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


TEXT = ("gcide", "text")  # the other data sets are images


def kind(name: str) -> str:
  """"text" or "images": the kind of examples data set `name` holds."""
  return "text" if name in TEXT else "images"


def source(config):
  """The batch source of config.data: a TextSource or an ImageSource, whose batch(step)
  and eval_batch(i) are pure functions of (seed, step), with no iterator state."""
  cfg = config.data
  if cfg.name not in DATASETS:
    raise ConfigError("data.name", cfg.name, DATASETS)
  full_batch = check_subset(config)
  if kind(cfg.name) == "text":
    path = (os.path.join(data_dir(cfg.dir), "gcide", "gcide.dict.dz") if cfg.name == "gcide"
            else cfg.path)
    return TextSource(config, path, full_batch)
  if cfg.name == "fashion_mnist":
    parts = images.load_fashion_mnist(data_dir(cfg.dir))
  elif cfg.name == "idx":
    parts = images.load_idx_folder(cfg.path)
  else:
    parts = images.load_npz(cfg.path)
  return ImageSource(config, parts, full_batch)


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

