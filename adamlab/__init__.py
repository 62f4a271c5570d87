"""adamlab: stable Adam training and hyperparameter transfer across width, in JAX."""

from importlib import metadata as _metadata

try:
  __version__ = _metadata.version("adamlab")  # one version, pyproject.toml's
except _metadata.PackageNotFoundError:  # a source tree that was never installed
  __version__ = "0+unknown"
