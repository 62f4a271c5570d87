"""Byte-level text: GCIDE by default, or user text files and token arrays.

Tokens live in one flat uint8/uint16/int32 array (a memmap for .bin/.npy). The last
`eval_fraction` of it is held out. The batch at step t is a pure function of
(seed, t): random windows whose offsets come from a counter-based generator, so a
resumed run needs no iterator state, and each process reads only its own rows.
"""

import gzip
import os

import numpy as np

from adamlab.data.streams import step_rng
from adamlab.errors import ConfigError


def load_tokens(path: str) -> np.ndarray:
  """Tokens from a text file (bytes), a .gz/.dz of text, a .npy, or a raw uint16 .bin."""
  if not os.path.exists(path):
    raise ConfigError("data.path", path, "an existing file (run `adamlab data fetch` for GCIDE)")
  try:
    if path.endswith(".npy"):
      tokens = np.load(path, mmap_mode="r")
    elif path.endswith(".bin"):
      tokens = np.memmap(path, dtype=np.uint16, mode="r")
    elif path.endswith((".gz", ".dz")):
      cache = path + ".tokens.npy"
      if not os.path.exists(cache) or os.path.getmtime(cache) < os.path.getmtime(path):
        with gzip.open(path) as f:
          raw = np.frombuffer(f.read(), np.uint8)
        tmp = cache + f".tmp{os.getpid()}.npy"
        np.save(tmp, raw)
        os.replace(tmp, cache)
      tokens = np.load(cache, mmap_mode="r")
    else:
      tokens = np.memmap(path, dtype=np.uint8, mode="r")
  except (OSError, ValueError, EOFError) as err:
    raise ConfigError("data.path", path, f"a readable token or text file ({err})") from err
  if tokens.ndim != 1 or tokens.size < 2:
    raise ConfigError("data.path", path, "a 1-D token array with at least 2 tokens")
  return tokens


def split(tokens: np.ndarray, eval_fraction: float):
  """(train, eval) views: the held-out part is the end of the corpus."""
  cut = int(len(tokens) * (1 - eval_fraction))
  return tokens[:cut], tokens[cut:]


def batch(tokens: np.ndarray, step: int, seed: int, batch_size: int, seq_len: int,
          rows=None, full_batch: bool = False):
  """(inputs, targets), each (rows, seq_len) int32, for global step `step`.

  rows: the slice of the global batch this process reads (default: all of it).
  full_batch: the windows starting at 0, seq_len, 2 seq_len, ... every step.
  """
  if len(tokens) < seq_len + 1:  # one window of seq_len + 1 tokens
    raise ConfigError("model.seq_len", seq_len, f"< the corpus length ({len(tokens)} tokens)")
  if full_batch:
    starts = np.arange(batch_size) * seq_len
  else:  # windows of seq_len + 1
    starts = step_rng(seed, step).integers(0, len(tokens) - seq_len, size=batch_size)
  if rows is not None:
    starts = starts[rows]
  window = np.stack([np.asarray(tokens[s:s + seq_len + 1]) for s in starts]).astype(np.int32)
  return window[:, :-1], window[:, 1:]


class TextSource:
  """Windows of a token corpus: batch(step) and eval_batch(i) as pure functions of
  (seed, step). config: an experiment config (seed, batch_size, data, model.seq_len,
  model.vocab_size); full_batch: data.full_batch, checked by the caller."""

  def __init__(self, config, path: str, full_batch: bool = False):
    cfg, self.seq_len = config.data, config.model.seq_len
    self.seed, self.batch_size, self.full_batch = config.seed, config.batch_size, full_batch
    tokens = load_tokens(path)
    if not 0 < cfg.eval_fraction < 1:
      raise ConfigError("data.eval_fraction", cfg.eval_fraction, "in (0, 1)")
    self.train, self.eval = split(tokens, cfg.eval_fraction)
    if cfg.train_size:
      windows = (len(self.train) - 1) // self.seq_len
      if cfg.train_size > windows:
        raise ConfigError("data.train_size", cfg.train_size,
                          f"<= {windows} (text windows of model.seq_len in the training split)")
      self.train = self.train[:cfg.train_size * self.seq_len + 1]
    top = int(np.max(tokens))
    if top >= config.model.vocab_size:
      raise ConfigError("model.vocab_size", config.model.vocab_size,
                        f"> the largest token id ({top})")

  def batch(self, step: int, rows=None):
    return batch(self.train, step, self.seed, self.batch_size, self.seq_len, rows,
                 self.full_batch)

  def eval_batch(self, i: int, rows=None):
    """The i-th held-out batch (the same at every evaluation)."""
    return batch(self.eval, i, self.seed + 1, self.batch_size, self.seq_len, rows)
