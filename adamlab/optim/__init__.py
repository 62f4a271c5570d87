"""Optax transforms for stable Adam training and width and depth parametrizations.

Imports nothing from Flax or the rest of adamlab, so `from adamlab import optim`
works in any JAX program.
"""

from adamlab.optim.adam_atan2 import (
    ScaleByAdamAtan2State, adam_atan2, atan2, atan2_of_square, scale_by_adam_atan2)
from adamlab.errors import ConfigError
from adamlab.optim.factory import (
    FAMILY, HYPERPARAMS, OPTIMIZERS, WEIGHT_DECAY_MODES, build, default_config, family,
    hyperparams, schedule, validate)
from adamlab.optim.parametrization import (
    ALIGNMENTS, DECAY_MODES, PARAMETRIZATIONS, ROLES, DepthExponents, Exponents, LeafRole,
    LeafScale, add_decayed_weights, branch_multiplier, decay_width_multipliers,
    depth_exponents, eps_multipliers, exponents, forward_multipliers, in_blocks,
    infer_roles, init_stds, lr_multipliers, parametrize, scale_by_parametrization,
    with_learning_rate)
from adamlab.optim.schedules import constant, warmup_cosine, wsd
from adamlab.optim.skip_spikes import SkipSpikesState, skip_spikes, skip_stats
from adamlab.optim.stable_adam import (
    ScaleByStableAdamState, last_rms, scale_by_stable_adam, stable_adamw)
from adamlab.optim.state import learning_rate, states_of
