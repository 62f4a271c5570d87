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
