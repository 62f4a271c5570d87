"""Spike detection and RMS-precedes-loss statistics on hand-made series."""

import math

import numpy as np
import pytest

from adamlab.analysis import spikes


def test_detect_flags_a_jump_over_k_times_the_running_median():
  x = [1.0] * 10
  x[7] = 2.5  # > 2 * median 1
  x[9] = 2.0  # not > 2 * 1
  assert spikes.detect(x, k=2.0, window=5, min_history=3) == [7]
  assert spikes.detect(x, k=3.0, window=5, min_history=3) == []


def test_detect_needs_min_history():
  x = [1.0, 1.0, 9.0, 1.0, 1.0, 9.0]
  assert spikes.detect(x, min_history=2) == [2, 5]
  assert spikes.detect(x, min_history=3) == [5]


def test_detect_uses_only_the_last_window_points():
  # The median of all history is 1 but of the last 3 points it is 10: no spike at 9 with
  # window 3, a spike with window 20.
  x = [1.0] * 6 + [10.0, 10.0, 10.0, 15.0]
  assert spikes.detect(x, window=3, min_history=3) == [6]
  assert spikes.detect(x, window=20, min_history=3) == [6]  # 6..9 is one run
  x[8] = 1.0  # break the run: 9 is a new event against the full median
  assert spikes.detect(x, window=20, min_history=3) == [6, 9]
  assert spikes.detect(x, window=3, min_history=3) == [6]


def test_detect_merges_runs_and_counts_non_finite_values():
  x = [1.0] * 8 + [math.nan, math.inf, math.nan] + [1.0] * 5 + [5.0]
  assert spikes.detect(x, window=20, min_history=5) == [8, 16]
  # A NaN before enough history is not a spike; NaNs never enter the median.
  assert spikes.detect([1.0, math.nan, 1.0, 1.0, 3.0], min_history=3) == [4]


def test_follow_probability_counts_effects_in_the_closed_window():
  effects = [5, 20]
  assert spikes.follow_probability([5], effects, 3, 30) == 1.0  # same step counts
  assert spikes.follow_probability([2], effects, 3, 30) == 1.0  # 5 = 2 + 3
  assert spikes.follow_probability([1], effects, 3, 30) == 0.0  # 5 > 1 + 3
  assert spikes.follow_probability([6], effects, 3, 30) == 0.0  # effect before the cause
  assert spikes.follow_probability([2, 6, 18, 25], effects, 3, 30) == 0.5
  assert spikes.follow_probability([2, 40], effects, 3, 30) == 1.0  # 40 is outside [0, n)
  assert math.isnan(spikes.follow_probability([], effects, 3, 30))


def test_chance_exact_and_monte_carlo():
  # Effects at 10 and 50, window 4, n = 100: t in [6, 10] or [46, 50] -> 10 of 100.
  assert spikes.chance_exact([10, 50], 4, 100) == pytest.approx(0.10)
  # Overlapping windows are counted once: t in [6, 12] -> 7 of 100.
  assert spikes.chance_exact([10, 12], 4, 100) == pytest.approx(0.07)
  assert spikes.chance_exact([], 4, 100) == 0.0
  effects = [3, 17, 40, 41, 77, 95]
  exact = spikes.chance_exact(effects, 5, 100)
  mc = spikes.chance_probability(8, effects, 5, 100, trials=2000, seed=1)
  assert mc == pytest.approx(exact, abs=0.02)
  assert math.isnan(spikes.chance_probability(0, effects, 5, 100))


def test_lag_signs_and_ties():
  # Effect 10: causes 7 (+3) and 12 (-2) -> -2; effect 30: causes 27 (+3), 33 (-3) -> tie, +3;
  # effect 60: nearest cause 40 is beyond max_lag 5 -> left out.
  assert spikes.lag([7, 12, 27, 33, 40], [10, 30, 60], max_lag=5) == [-2, 3]
  assert spikes.lag([], [10], max_lag=5) == []
  assert spikes.lag([4], [4], max_lag=0) == [0]


def test_summary_on_a_synthetic_run():
  n = 200
  loss = np.ones(n)
  loss[[50, 120]] = 10.0
  rms_a = np.ones(n)
  rms_a[[47, 118, 170]] = 5.0  # precedes both loss spikes by 3 and 2; one false alarm
  rms_b = np.ones(n)
  rms_b[[10]] = 5.0  # unrelated
  rows = spikes.summary(dict(a=rms_a, b=rms_b), loss, k=2.0, window=20, follow_window=5)
  a, b = rows
  assert a["layer"] == "a" and a["rms_spikes"] == [47, 118, 170]
  assert a["loss_spikes"] == [50, 120]
  assert a["p_follow"] == pytest.approx(2 / 3)
  assert a["p_chance"] == pytest.approx(12 / 200)  # [45, 50] and [115, 120]
  assert a["median_lag"] == pytest.approx(2.5)
  assert b["rms_spikes"] == [10] and b["p_follow"] == 0.0 and math.isnan(b["median_lag"])


def test_pooled_counts_causes_over_runs_and_layers():
  base = np.ones(60)
  loss = base.copy()
  loss[[30, 50]] = 10.0  # two loss spikes
  a = base.copy()
  a[[27, 40]] = 10.0  # one RMS spike 3 steps before a loss spike, one followed by none
  b = base.copy()
  b[49] = 10.0  # 1 step before
  runs = [({"a": a, "b": b}, loss), ({"a": base, "b": b}, base)]
  out = spikes.pooled(runs, ["a", "b"], window=10, follow_window=5)
  assert out["rms_spikes"] == 4 and out["loss_spikes"] == 2
  assert out["p_follow"] == pytest.approx(2 / 4)
  assert sorted(out["lags"]) == [1, 3] and out["median_lag"] == 2.0
  # chance: run 1 has 12 of 60 positions with a loss spike within 5 steps ahead; run 2 none.
  assert out["p_chance"] == pytest.approx((3 * 12 / 60 + 0) / 4)


def test_depth_orders_layers_from_the_input():
  names = [
    "head.kernel",
    "blocks.1.mlp.up.kernel",
    "patch_embed.kernel",
    "blocks.0.attn.qkv.kernel",
  ]
  assert sorted(names, key=spikes.depth) == [
    "patch_embed.kernel",
    "blocks.0.attn.qkv.kernel",
    "blocks.1.mlp.up.kernel",
    "head.kernel",
  ]


def test_detect_floor_and_gap_for_a_loss_that_trains_to_zero():
  # A memorized loss sits at exactly 0: with no floor every positive value is > 2 x 0.
  x = [0.0] * 10 + [1e-6, 0.0, 0.0] + [0.0] * 5 + [3.0, 0.5, 0.0, 0.0, 2.0, 0.0] + [0.0] * 10
  assert spikes.detect(x, window=5, min_history=3) == [10, 18, 22]
  assert spikes.detect(x, window=5, min_history=3, floor=0.1) == [18, 22]
  # Points at most `gap` apart are one event; events() gives its first and last point.
  assert spikes.detect(x, window=5, min_history=3, floor=0.1, gap=4) == [18]
  found = spikes.events(x, window=5, min_history=3, floor=0.1, gap=4)
  assert found == [(18, 22)]
  assert spikes.heights(x, found) == [3.0]
  assert spikes.heights([1.0, math.nan, 2.0], [(0, 2)]) == [math.inf]


def test_depth_orders_mlp_layers_from_the_input():
  layers = ["readout.kernel", "layers.1.kernel", "layers.0.kernel"]
  assert sorted(layers, key=spikes.depth) == [
    "layers.0.kernel",
    "layers.1.kernel",
    "readout.kernel",
  ]
  assert spikes.depth("blocks.3.attn.kernel") == 4 and spikes.depth("embed.embedding") == 0


def test_pooled_and_summary_take_the_loss_detector_of_a_loss_at_zero():
  loss = np.zeros(80)
  loss[[30, 31, 33]] = [2.0, 0.5, 1.0]  # one oscillating spike
  loss[60] = 1e-3  # a blip below the floor
  rms = np.ones(80)
  rms[[28, 58]] = 10.0
  kw = dict(k=2.0, window=20, floor=0.1, gap=5)
  out = spikes.pooled([({"a": rms}, loss)], ["a"], follow_window=4, loss_spike=kw)
  assert out["loss_spikes"] == 1 and out["rms_spikes"] == 2
  assert out["p_follow"] == 0.5 and out["lags"] == [2]
  (row,) = spikes.summary({"a": rms}, loss, follow_window=4, loss_spike=kw)
  assert row["loss_spikes"] == [30] and row["p_chance"] == pytest.approx(5 / 80)
  # Without the floor, every positive value after zeros is a spike: 30, 33 and 60.
  assert spikes.pooled([({"a": rms}, loss)], ["a"], follow_window=4)["loss_spikes"] == 3


def test_crossings_and_lead():
  x = [0.5, 1.5, 2.0, 0.9, 1.0, 1.2, 0.1, 3.0]
  assert spikes.crossings(x, 1.0) == [1, 5, 7]  # 1.0 itself is not above
  assert spikes.crossings([2.0, 2.0, 0.5], 1.0) == []  # starting above is no crossing
  # Effect 10: latest cause at or before it is 8 -> 2; effect 4: cause 4 -> 0;
  # effect 40: latest cause 12 is 28 back, beyond max_lead 20 -> None; effect 1: none yet.
  assert spikes.lead([4, 8, 12], [10, 4, 40, 1], max_lead=20) == [2, 0, None, None]
  assert spikes.lead([], [5], max_lead=3) == [None]


def test_pooled_with_rms_crossing_one_as_the_cause():
  loss = np.ones(60)
  loss[40] = 10.0
  rms = np.full(60, 0.5)
  rms[36:42] = 3.0  # over 1 from step 36: a loss spike 4 steps later
  rms[10:12] = 1.5  # over 1, no loss spike after
  out = spikes.pooled(
    [({"a": rms}, loss)], ["a"], follow_window=5, find=lambda x: spikes.crossings(x, 1.0)
  )
  assert out["rms_spikes"] == 2 and out["p_follow"] == 0.5 and out["lags"] == [4]
