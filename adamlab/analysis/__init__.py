"""Pure functions over results: coordinate-check slopes, hyperparameter sensitivity, plots."""

from adamlab.analysis.coords import plot as plot_coords, read_csv, slopes, write_csv
from adamlab.analysis import sensitivity

__all__ = ("plot_coords", "read_csv", "slopes", "write_csv", "sensitivity")
