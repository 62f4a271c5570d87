"""Read parts of an optimizer state, wherever wrappers have nested them.

optax.tree_utils searches NamedTuples and dicts at any depth, so these work through
chain, masked, MultiSteps, inject_hyperparams, with_extra_args_support and skip_spikes.
"""

from typing import Any, Optional

import optax


def states_of(opt_state: Any, cls: type) -> list:
  """Every state of NamedTuple class `cls` in `opt_state`, outermost first."""
  found = optax.tree_utils.tree_get_all_with_path(
      opt_state, cls.__name__, filtering=lambda _, v: isinstance(v, cls))
  return [s for _, s in found]


def _is_injected(path, _) -> bool:
  # hyperparams["learning_rate"], not hyperparams_states["learning_rate"] (a schedule's).
  parent = path[-2] if len(path) >= 2 else None
  return isinstance(parent, optax.tree_utils.NamedTupleKey) and parent.name == "hyperparams"


def learning_rate(opt_state: Any) -> Optional[Any]:
  """The learning rate `optax.inject_hyperparams` put in `opt_state` (this step's value
  of a schedule), or None if nothing injects one. KeyError if several do."""
  return optax.tree_utils.tree_get(opt_state, "learning_rate", filtering=_is_injected)
