"""Coordinate-check analysis: slopes, CSV round trip, plot."""

import pytest

from adamlab import analysis

WIDTHS = [32, 64, 128, 256]


def test_slopes_fit_a_power_law():
  rows = [dict(width=w, step=1, layer="a", rms=3.0 * w**0.5) for w in WIDTHS]
  rows += [dict(width=w, step=1, layer="b", rms=2.0) for w in WIDTHS]
  s = analysis.slopes(rows)
  assert s["a"] == pytest.approx(0.5) and s["b"] == pytest.approx(0.0, abs=1e-12)


def test_csv_round_trip_and_plot(tmp_path):
  rows = [
    dict(width=w, step=s, layer=l, rms=float(w * (s + 1)))
    for w in WIDTHS
    for s in range(3)
    for l in ("a", "b")
  ]
  analysis.write_csv(rows, tmp_path / "c.csv")
  assert analysis.read_csv(tmp_path / "c.csv") == rows
  analysis.plot_coords(rows, tmp_path / "c.png", "title")
  assert (tmp_path / "c.png").stat().st_size > 10_000
  assert analysis.slopes(rows, step=0)["a"] == pytest.approx(1.0)
