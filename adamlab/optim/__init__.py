"""Optax transforms for stable Adam training and width and depth parametrizations.

Imports only JAX, Optax and NumPy, so `from adamlab import optim` works in any JAX
program, on any params layout (dicts, Flax linen or nnx, Equinox, Haiku).
"""

from adamlab.optim.adam_atan2 import ScaleByAdamAtan2State, adam_atan2, scale_by_adam_atan2
from adamlab.optim.aliases import adafactor, lion, sgd
from adamlab.optim.coord_check import CoordCheck, coord_check, coord_records
from adamlab.optim.chain import DECAY_MODES, scale_by_parametrization, with_learning_rate
from adamlab.optim.init import apply_multipliers, init_params
from adamlab.optim.muon import SHAPES as MUON_SHAPES, muon, muon_dimension_numbers, shape_factors
from adamlab.optim.theory import (
  ALIGNMENTS,
  FAMILIES,
  PARAMETRIZATIONS,
  ROLES,
  DepthExponents,
  Exponents,
  branch_multiplier,
  depth_exponents,
  exponents,
)
from adamlab.optim.parametrization import in_blocks, parametrize
from adamlab.optim.table import (
  LeafScale,
  decay_width_multipliers,
  eps_multipliers,
  forward_multipliers,
  init_stds,
  lr_multipliers,
)
from adamlab.optim.schedules import SCHEDULES, constant, warmup_cosine, wsd
from adamlab.optim.skip_spikes import SkipSpikesState, skip_spikes, skip_stats
from adamlab.optim.stable_adam import (
  ScaleByStableAdamState,
  adamw,
  last_rms,
  scale_by_stable_adam,
  stable_adamw,
)
from adamlab.optim.state import learning_rate, states_of

__all__ = (
  # Transforms and their states.
  "scale_by_stable_adam",
  "ScaleByStableAdamState",
  "scale_by_adam_atan2",
  "ScaleByAdamAtan2State",
  "scale_by_parametrization",
  "with_learning_rate",
  "skip_spikes",
  "SkipSpikesState",
  # Aliases.
  "adamw",
  "stable_adamw",
  "adam_atan2",
  "lion",
  "sgd",
  "adafactor",
  "muon",
  "muon_dimension_numbers",
  "shape_factors",
  "MUON_SHAPES",
  # Parametrizations.
  "parametrize",
  "LeafScale",
  "init_params",
  "apply_multipliers",
  "coord_check",
  "coord_records",
  "CoordCheck",
  "exponents",
  "Exponents",
  "depth_exponents",
  "DepthExponents",
  "branch_multiplier",
  "in_blocks",
  "lr_multipliers",
  "eps_multipliers",
  "forward_multipliers",
  "init_stds",
  "decay_width_multipliers",
  "PARAMETRIZATIONS",
  "FAMILIES",
  "ALIGNMENTS",
  "ROLES",
  "DECAY_MODES",
  # Schedules.
  "constant",
  "warmup_cosine",
  "wsd",
  "SCHEDULES",
  # Telemetry.
  "last_rms",
  "skip_stats",
  "learning_rate",
  "states_of",
)
