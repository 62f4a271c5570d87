"""The random stream of one training step: a pure function of (seed, step)."""

import numpy as np


def step_rng(seed: int, step: int) -> np.random.Generator:
  """A generator for step `step` whose draws share nothing with any other step's.

  Philox advances the lowest word of its counter as it draws, so the step goes in the
  next word: two steps' streams start 2^64 blocks apart. (With the step in the lowest
  word, step t + 1 would replay step t's stream shifted by one block: consecutive
  batches would share almost all their examples.)
  """
  return np.random.Generator(np.random.Philox(key=seed, counter=[0, step, 0, 0]))
