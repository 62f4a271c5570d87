"""Critical batch size: steps-to-target and the McCandlish fit on synthetic curves."""

import math

import pytest

from adamlab.analysis import batch_size

BATCHES = [16, 32, 64, 128, 256, 512]


def _steps(b):
  return 100 * (1 + 64 / b)


def test_steps_to_target_on_a_decreasing_curve():
  steps = [0, 10, 20, 30, 40, 50]
  losses = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5]
  assert batch_size.steps_to_target(steps, losses, 3.0) == 20
  assert batch_size.steps_to_target(steps, losses, 2.5) == 30
  assert batch_size.steps_to_target(steps, losses, 0.1) is None
  # Trailing mean of 2: (4+3)/2 = 3.5, (3+2)/2 = 2.5 -> step 30 reaches 2.5.
  assert batch_size.steps_to_target(steps, losses, 2.5, window=2) == 30
  # Trailing means of 3: (4+3+2)/3 = 3 at step 30, (3+2+1)/3 = 2 at step 40.
  assert batch_size.steps_to_target(steps, losses, 2.5, window=3) == 40
  assert batch_size.steps_to_target(steps, losses, 3.5, window=3) == 30  # (4+3+2)/3 = 3
  assert batch_size.steps_to_target(steps[:2], losses[:2], 9.0, window=3) is None


def test_steps_to_target_smooths_a_dip_and_skips_nan():
  steps = [1, 2, 3, 4, 5]
  losses = [3.0, 0.5, 3.0, math.nan, 1.0]
  assert batch_size.steps_to_target(steps, losses, 1.0) == 2
  assert batch_size.steps_to_target(steps, losses, 1.0, window=2) is None


def test_fit_recovers_s_min_and_b_crit():
  fit = batch_size.fit_critical(BATCHES, [_steps(b) for b in BATCHES])
  assert fit["s_min"] == pytest.approx(100.0)
  assert fit["b_crit"] == pytest.approx(64.0)
  assert fit["residual"] == pytest.approx(0.0, abs=1e-9)


def test_fit_ignores_none_and_needs_two_points():
  needed = [_steps(b) for b in BATCHES[:3]] + [None]
  fit = batch_size.fit_critical(BATCHES[:4], needed)
  assert fit["s_min"] == pytest.approx(100.0) and fit["b_crit"] == pytest.approx(64.0)
  assert all(math.isnan(v) for v in batch_size.fit_critical([16, 32], [200, None]).values())
  assert all(math.isnan(v) for v in batch_size.fit_critical([16, 16], [200, 300]).values())


def test_fit_residual_is_the_rms_misfit():
  # 1/B = 1/4, 1/2, 3/4; y = 1, 0, 1: by symmetry the best line is flat, y = 2/3, and the
  # misfits 1/3, -2/3, 1/3 have rms sqrt(2/9).
  fit = batch_size.fit_critical([4, 2, 4 / 3], [1.0, 0.0, 1.0])
  assert fit["s_min"] == pytest.approx(2 / 3, abs=1e-12)
  assert fit["b_crit"] == pytest.approx(0.0, abs=1e-12)
  assert fit["residual"] == pytest.approx(math.sqrt(2 / 9))


def test_doubling_gains():
  gains = batch_size.doubling_gains(list(reversed(BATCHES)), [_steps(b) for b in reversed(BATCHES)])
  assert [(g["b_from"], g["b_to"]) for g in gains] == list(zip(BATCHES, BATCHES[1:]))
  # 16 -> 32: 500 / 300; 64 -> 128: 200 / 150; far above 64 it tends to 1.
  assert gains[0]["speedup"] == pytest.approx(5 / 3)
  assert gains[2]["speedup"] == pytest.approx(4 / 3)
  assert gains[-1]["speedup"] == pytest.approx(125 / 112.5)
  assert batch_size.doubling_gains([16, 32, 64], [500, None, 200]) == [
    dict(b_from=16, b_to=64, speedup=2.5)
  ]
