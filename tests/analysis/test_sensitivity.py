"""Wortsman et al.'s learning-rate sensitivity, against its definition."""

import pytest

from adamlab.analysis import sensitivity


def test_lr_sensitivity_against_its_definition():
  losses = [3.0, 2.2, 2.0, 2.5, float("nan"), None, 9.0]
  cap = 4.0
  # By hand: capped [3, 2.2, 2, 2.5, 4, 4, 4], mean 21.7 / 7, best 2.
  assert sensitivity.lr_sensitivity(losses, cap) == pytest.approx(21.7 / 7 - 2.0, rel=1e-12)
  assert sensitivity.lr_sensitivity([1.5, 1.5, 1.5], cap) == 0.0
  # Every point diverged: all at the cap, so nothing to choose between.
  assert sensitivity.lr_sensitivity([None, float("inf")], cap) == 0.0
  with pytest.raises(ValueError, match="losses"):
    sensitivity.lr_sensitivity([], cap)
