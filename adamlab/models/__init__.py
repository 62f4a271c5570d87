"""Flax NNX GPT, ViT and MLP whose width-dependent numbers come from adamlab.optim."""

from adamlab.models.build import (
  DTYPES,
  MODELS,
  apply_table,
  build,
  build_params,
  default_config,
  functional,
  param_init,
  param_shapes,
  table,
  validate,
)
from adamlab.models.gpt import GPT
from adamlab.models.loss import classification_loss, lm_loss
from adamlab.models.mlp import MLP
from adamlab.models.task import Classifier, LanguageModel, task
from adamlab.models.vit import ViT

__all__ = (
  "DTYPES",
  "MODELS",
  "apply_table",
  "build",
  "build_params",
  "default_config",
  "functional",
  "param_init",
  "param_shapes",
  "table",
  "validate",
  "GPT",
  "classification_loss",
  "lm_loss",
  "MLP",
  "Classifier",
  "LanguageModel",
  "task",
  "ViT",
)
