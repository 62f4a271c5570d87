"""Read parts of an optimizer state, wherever wrappers have nested them.

optax.tree_utils searches NamedTuples and dicts at any depth, so these work through
chain, masked, MultiSteps, inject_hyperparams, with_extra_args_support and skip_spikes.
"""

from typing import Any, Optional

import optax


def states_of(opt_state: Any, cls: type) -> list:
  """Every state of a NamedTuple class in an optimizer state, outermost first.

  Args:
    opt_state: an optimizer state.
    cls: a NamedTuple state class, e.g. `optax.ScaleByAdamState`.

  Returns:
    A list of the states of that class.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> state = optax.chain(optax.clip(1.0), optax.adam(1e-3)).init({"w": jnp.ones(2)})
    >>> len(optim.states_of(state, optax.ScaleByAdamState))
    1
  """
  found = optax.tree_utils.tree_get_all_with_path(
    opt_state, cls.__name__, filtering=lambda _, v: isinstance(v, cls)
  )
  return [s for _, s in found]


def _is_injected(path, _) -> bool:
  # hyperparams["learning_rate"], not hyperparams_states["learning_rate"] (a schedule's).
  parent = path[-2] if len(path) >= 2 else None
  return isinstance(parent, optax.tree_utils.NamedTupleKey) and parent.name == "hyperparams"


def learning_rate(opt_state: Any) -> Optional[Any]:
  """The learning rate `optax.inject_hyperparams` put in an optimizer state.

  Args:
    opt_state: an optimizer state.

  Returns:
    This step's learning rate (a schedule's value at the step), or None if nothing
    injects one.

  Raises:
    KeyError: if several transforms inject one.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> tx = optax.inject_hyperparams(optim.stable_adamw)(learning_rate=3e-4)
    >>> round(float(optim.learning_rate(tx.init({"w": jnp.ones(2)}))), 6)
    0.0003
  """
  return optax.tree_utils.tree_get(opt_state, "learning_rate", filtering=_is_injected)
