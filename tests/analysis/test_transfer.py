import math

import numpy as np
import pytest

from adamlab.analysis import transfer


def test_optimum_recovers_the_vertex_of_a_parabola_on_any_grid():
  xs = [-10, -9, -7.5, -6, -4]  # uneven spacing
  best = transfer.optimum(xs, [(x + 7.2) ** 2 + 1.0 for x in xs])
  assert best["refined"] and not best["at_edge"]
  assert best["x"] == pytest.approx(-7.2)
  assert best["loss"] == pytest.approx(1.09)  # the best grid point's loss


def test_optimum_ignores_diverged_points_and_flags_the_edge():
  best = transfer.optimum([-8, -6, -4, -2], [2.0, 1.5, None, math.inf])
  assert best == dict(x=-6, loss=1.5, at_edge=True, refined=False)
  assert transfer.optimum([-8, -6], [None, math.nan]) is None
  # Flat neighbourhood: no parabola, the best grid point.
  assert transfer.optimum([0, 1, 2], [1.0, 1.0, 1.0])["x"] in (0, 1, 2)


def test_optima_groups_rows_and_interpolates_in_log2():
  rows = [
    dict(p=p, w=w, lr=2.0**k, loss=(k - c) ** 2)
    for p, c in (("sp", -5.0), ("mup", -7.25))
    for w in (32, 64)
    for k in range(-10, -2)
  ]
  out = transfer.optima(rows, "lr", "loss", by=("p", "w"))
  assert [(o["p"], o["w"]) for o in out] == [("sp", 32), ("sp", 64), ("mup", 32), ("mup", 64)]
  assert [o["log_x"] for o in out] == pytest.approx([-5, -5, -7.25, -7.25])
  assert out[2]["lr"] == pytest.approx(2**-7.25)
  assert all(o["points"] == 8 and not o["at_edge"] for o in out)
  ten = transfer.optima(
    [dict(e=10.0**k, loss=(k + 8.5) ** 2) for k in range(-12, -4)], "e", "loss", by=(), base=10
  )
  assert ten[0]["log_x"] == pytest.approx(-8.5) and ten[0]["e"] == pytest.approx(10**-8.5)


def test_drift():
  assert transfer.drift([-6.0, -7.5, None, -5.0]) == 2.5
  assert math.isnan(transfer.drift([None]))


def test_fit_exponent_exact_and_noisy():
  widths = [32, 64, 128, 256]
  exact = transfer.fit_exponent(widths, [3.0 - 1.0 * math.log2(w) for w in widths])
  assert exact["slope"] == pytest.approx(-1.0) and exact["stderr"] == pytest.approx(0, abs=1e-9)
  # With a grid-resolution sigma, a perfect fit still has an uncertainty.
  sig = [0.3] * 4
  f = transfer.fit_exponent(widths, [3.0 - math.log2(w) for w in widths], sigma=sig)
  x = np.log2(widths)
  assert f["stderr"] == pytest.approx(0.3 / math.sqrt(np.sum((x - x.mean()) ** 2)))
  # Scatter larger than sigma inflates the error; noisy data from a known slope lands
  # within a few standard errors of it.
  rng = np.random.default_rng(0)
  many = 2 ** np.arange(5, 13)
  y = -0.5 * np.log2(many) + rng.normal(0, 0.5, len(many))
  g = transfer.fit_exponent(many, y, sigma=[0.1] * len(many))
  assert g["stderr"] > 0.1 / math.sqrt(np.sum((np.log2(many) - np.log2(many).mean()) ** 2))
  assert abs(g["slope"] + 0.5) < 3 * g["stderr"]
  assert math.isnan(transfer.fit_exponent([32], [1.0])["slope"])


def test_wider_is_better_counts_violations_after_smoothing():
  steps = [10, 20, 30, 40]
  curves = {
    32: (steps, [3.0, 2.5, 2.0, 1.9]),
    64: (steps, [2.9, 2.4, 2.05, 1.8]),
    128: (steps, [2.8, 2.3, 1.9, 1.7]),
  }
  out = transfer.wider_is_better(curves)
  assert out["ordered"] == [True, True, False, True] and out["violations"] == [0, 0, 1, 0]
  assert out["fraction"] == 0.75 and out["holds_from"] == 40
  smoothed = transfer.wider_is_better(curves, window=2)
  assert smoothed["ordered"] == [True, True, True, True] and smoothed["holds_from"] == 10
  flipped = {w: (steps, c[1][::-1]) for w, c in curves.items()}
  flipped[32] = (steps, [3.0, 2.5, 2.0, 1.0])  # the narrowest is best at the end
  assert transfer.wider_is_better(flipped)["holds_from"] is None
  with pytest.raises(ValueError, match="width 64"):
    transfer.wider_is_better({32: ([1, 2], [1, 1]), 64: ([1, 3], [1, 1])})
