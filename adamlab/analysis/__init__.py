"""Pure functions over results: coordinate-check slopes, hyperparameter sensitivity, plots."""

from adamlab.analysis.coords import (
  coord_check_rows,
  plot as plot_coords,
  plot_coord_check,
  read_csv,
  slopes,
  write_csv,
)
from adamlab.analysis import sensitivity

__all__ = (
  "plot_coords",
  "plot_coord_check",
  "coord_check_rows",
  "read_csv",
  "slopes",
  "write_csv",
  "sensitivity",
)
