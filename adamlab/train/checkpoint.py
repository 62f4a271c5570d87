"""Orbax checkpoints of the whole train state, saved asynchronously, newest-good restore.

The state is a dict: params, opt_state, step, nonfinite (consecutive skipped steps),
data_offset (batches skipped by rewinds), rng, and ema params when enabled. The
config is saved beside the checkpoints as config.json by the trainer.
"""

import orbax.checkpoint as ocp


def manager(directory: str, every: int, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
    save_interval_steps=every, max_to_keep=keep, enable_async_checkpointing=True, create=True
  )
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, force: bool = False) -> bool:
  return mngr.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, log=print, max_step=None):
  """(step, state) of the newest checkpoint that restores; (None, None) if there is none.

  A checkpoint that fails to restore (truncated or garbled files) is reported and the
  previous one is tried. max_step: only checkpoints at or before this step.
  """
  steps = [s for s in mngr.all_steps() if max_step is None or s <= max_step]
  for step in sorted(steps, reverse=True):
    try:
      state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
      return step, state
    except Exception as err:  # any corruption Orbax or tensorstore reports
      first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
      log(
        f"checkpoint {step} is unreadable ({type(err).__name__}: {first}); trying the previous one"
      )
  return None, None
