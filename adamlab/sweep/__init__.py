"""Sweeps: config grids -> runs with stable ids, a local executor, results tables."""

from adamlab.sweep import grid, local, results

__all__ = ("grid", "local", "results")
