"""adamlab: stable Adam training and hyperparameter transfer across width, in JAX."""

__version__ = "0.1.0"
