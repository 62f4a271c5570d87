"""Images: Fashion-MNIST IDX files by default, or user IDX / .npz arrays.

Pixels are scaled to [0, 1] and normalised by the training set's mean and std. The
batch at step t is a pure function of (seed, t).
"""

import gzip
import os
import struct

import numpy as np

from adamlab.data.streams import step_rng
from adamlab.errors import ConfigError

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """An IDX file (optionally gzipped) as an array."""
  if not os.path.exists(path):
    raise ConfigError("data.path", path, "an existing IDX file (run `adamlab data fetch`)")
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
    zero, kind, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind not in _IDX_TYPES:
      raise ValueError("bad IDX magic number")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, _IDX_TYPES[kind], offset=4 + 4 * ndim)
    return arr.reshape(shape)
  except (OSError, ValueError, struct.error, EOFError) as err:
    raise ConfigError("data.path", path, f"a valid IDX file ({err})") from err


def load_fashion_mnist(root: str):
  """{'train': (images, labels), 'eval': (images, labels)}, images (n, 28, 28, 1) float32."""
  return load_idx_folder(os.path.join(root, "fashion-mnist"))


def load_idx_folder(d: str):
  """A folder with train-/t10k- images and labels IDX files (gzipped), MNIST naming."""
  parts = {}
  for split, prefix in (("train", "train"), ("eval", "t10k")):
    x = read_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"))
    parts[split] = (x, y)
  return normalise(parts)


def load_npz(path: str):
  """A user .npz with x_train, y_train, x_test, y_test (images (n, H, W[, C]))."""
  try:
    z = np.load(path)
    parts = {"train": (z["x_train"], z["y_train"]), "eval": (z["x_test"], z["y_test"])}
  except (OSError, KeyError, ValueError) as err:
    raise ConfigError("data.path", path, f"an .npz with x_train, y_train, x_test, y_test ({err})")
  return normalise(parts)


def normalise(parts):
  x_train = parts["train"][0].astype(np.float32) / 255.0
  mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
  out = {}
  for split, (x, y) in parts.items():
    x = (x.astype(np.float32) / 255.0 - mean) / std
    if x.ndim == 3:
      x = x[..., None]
    if len(x) != len(y):
      raise ConfigError("data.path", split, "as many labels as images")
    out[split] = (x, y.astype(np.int32))
  return out


def batch(images, labels, step: int, seed: int, batch_size: int, rows=None,
          full_batch: bool = False):
  """(images, labels) for global step `step`: indices drawn from a counter-based generator,
  or every image in order (full_batch: batch_size is the data set's size)."""
  if full_batch:
    idx = np.arange(batch_size)
  else:
    idx = step_rng(seed, step).integers(0, len(images), size=batch_size)
  if rows is not None:
    idx = idx[rows]
  return images[idx], labels[idx]


class ImageSource:
  """Labelled images: batch(step) and eval_batch(i) as pure functions of (seed, step).
  parts: {"train": (x, y), "eval": (x, y)}, normalised; full_batch: data.full_batch."""

  def __init__(self, config, parts, full_batch: bool = False):
    self.seed, self.batch_size, self.full_batch = config.seed, config.batch_size, full_batch
    self.train, self.eval = parts["train"], parts["eval"]
    size = config.data.train_size
    if size:
      if size > len(self.train[0]):
        raise ConfigError("data.train_size", size,
                          f"<= {len(self.train[0])} (training images in the training split)")
      self.train = tuple(a[:size] for a in self.train)

  def batch(self, step: int, rows=None):
    return batch(*self.train, step, self.seed, self.batch_size, rows, self.full_batch)

  def eval_batch(self, i: int, rows=None):
    """The i-th held-out batch (the same at every evaluation): eval images in order."""
    x, y = self.eval
    idx = (np.arange(self.batch_size) + i * self.batch_size) % len(x)
    if rows is not None:
      idx = idx[rows]
    return x[idx], y[idx]
