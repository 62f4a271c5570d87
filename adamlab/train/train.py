"""The trainer: one config, one run directory, resumable at any point.

    adamlab train --config configs/gpt.py:mup,stable_adamw --workdir runs/x

Read top to bottom: `run_pack` checks everything a user can get wrong before any
run directory is touched (`checks.py`), opens one host record per run, builds the
model, table, optimizer and state once (`setup`), restores the newest checkpoint and
opens the metrics writers (`restore_and_open_writers`), and runs `loop`. K runs that
differ only in optimizer scalars train as one vmapped program with a leading run axis;
one run is K = 1.

A run directory holds config.json, metrics.jsonl, tb/, checkpoints/ and plots;
giving the same --workdir again resumes from the newest readable checkpoint, and
metrics.jsonl is cut back to that step so no step is written twice. SIGTERM or
SIGINT ends the run after the current step, with a checkpoint of that step
(`preemption.py`).
"""

import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from adamlab.train import optimizer
from adamlab.files import write_text
from adamlab.train import checkpoint, mesh as mesh_lib, metrics as metrics_lib, plots
from adamlab.train.checks import (
  check_config,
  check_config_mesh_and_data,
  check_pack,
  check_workdir,
  start_distributed,
)
from adamlab.train.preemption import Preempted, signals
from adamlab.train.step import initial_state, make_eval_step, make_train_step

# Peak dense bf16 FLOP/s per device, for the MFU estimate.
PEAK_FLOPS = {
  "H100": 989e12,
  "H200": 989e12,
  "A100": 312e12,
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5": 459e12,
}

STOPPED = "stopped.txt"  # in a run directory: why non-finite steps ended the run
EXIT_STOPPED = 3  # `adamlab train`'s exit code then


class TrainingStopped(RuntimeError):
  """Training cannot go on (too many non-finite steps in a row); a checkpoint is kept."""


@dataclasses.dataclass
class Run:
  """What the host keeps of one run: its directory, checkpoints, metrics writer, whether
  it still trains (not stopped by non-finite steps), and its last logged metrics."""

  config: Any
  workdir: str
  ckpt: Any
  writer: Any = None
  active: bool = True
  last: dict = dataclasses.field(default_factory=dict)


class Setup(NamedTuple):
  """Everything built once: the jitted steps, the data, and how the state is laid out."""

  config: Any
  source: Any
  rows: Any  # the rows of the global batch this process reads
  put: Callable  # a host batch -> a global array on the mesh
  train_step: Callable  # (state, x, y) -> (state, metrics as one [K, n] array)
  eval_step: Callable  # (params, x, y) -> (loss [K], accuracy [K])
  metric_names: list
  abstract: dict  # one run's state, as ShapeDtypeStructs (what a checkpoint restores to)
  items_per_step: int
  flops_per_step: float
  peak_flops: float


def run(config, workdir: str, log=print) -> dict:
  """Train (or resume) the run; returns the last logged metrics."""
  return run_pack([config], [workdir], log)[0]


def run_pack(configs, workdirs, log=print) -> list:
  """Train K runs that differ only in scalar optimizer hyperparameters as one program.

  Every run has its own directory, metrics and checkpoints, as if trained alone; one
  stopped by non-finite steps is frozen while the others go on. Returns each run's
  last logged metrics.
  """
  check_pack(configs, workdirs)
  start_distributed(configs[0])
  mesh, task, source = check_config_mesh_and_data(configs[0])
  for c in configs[1:]:
    check_config(c)
  with signals() as preemption:  # (recorded from here on, setup and restore included)
    runs = open_runs(configs, workdirs)  # from here on, the run directories are ours
    s, state = setup(configs, mesh, task, source)
    try:
      state = restore_and_open_writers(s, runs, state, log)
      _stop_if_signalled(preemption, int(state["step"][0]))
      loop(s, runs, state, preemption, log)
    finally:
      for r in runs:
        r.ckpt.wait_until_finished()
        r.ckpt.close()
        if r.writer:
          r.writer.close()
  for r in runs if configs[0].plots else ():  # ~1 s a run: a sweep may turn them off
    plots.plot_run(r.workdir)
  if not any(r.active for r in runs):
    raise TrainingStopped(_read(os.path.join(runs[0].workdir, STOPPED)))
  return [r.last for r in runs]


def open_runs(configs, workdirs) -> list:
  """A host record per run; a new run directory gets its config.json."""
  resuming = [check_workdir(w, c) for c, w in zip(configs, workdirs)]
  runs = []
  for c, w, resume in zip(configs, workdirs, resuming):
    os.makedirs(w, exist_ok=True)
    if not resume:
      write_text(os.path.join(w, "config.json"), c.to_json(indent=1))
    if os.path.exists(os.path.join(w, STOPPED)):
      os.remove(os.path.join(w, STOPPED))
    ckpt = checkpoint.manager(
      os.path.abspath(os.path.join(w, "checkpoints")), c.checkpoint_every, c.keep_checkpoints
    )
    runs.append(Run(c, w, ckpt))
  return runs


def setup(configs, mesh, task, source):
  """(Setup, state): model, table, optimizer and jitted steps of the K runs, built once,
  and their fresh state, stacked on a leading run axis. The params and optimizer
  states are made inside jits where they live: no full-size copy on one device."""
  config = configs[0]
  key = jax.random.PRNGKey(config.seed)
  apply, params, table = optimizer.build_params(
    config, key, lambda abstract: mesh_lib.param_shardings(abstract, mesh)
  )
  # The optimizer needs only the params' shapes (mask, table check): nothing keeps them.
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  n_params = sum(x.size for x in jax.tree.leaves(shapes))
  values = [optimizer.hyperparams(c.optimizer) for c in configs]
  build_tx = lambda hp: optimizer.build(config.optimizer, table, shapes, hp)
  state, shardings = _born_stacked(config, params, build_tx, values, mesh, key)
  del params
  abstract = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=_unstacked(s)),
    state,
    shardings,
  )
  rows = _process_rows(config.batch_size)
  objective = task.objective(apply)
  train_step, names = _compile_train_step(
    config, objective, build_tx, values, state, shardings, source, rows
  )
  eval_step = make_eval_step(objective)
  evaluate = _over_runs(lambda p, hp, x, y: eval_step(p, x, y), len(configs))
  batch = mesh_lib.batch_sharding(mesh)  # (one object: jit's dispatch compares it each step)
  return Setup(
    config,
    source,
    rows,
    lambda a: _put(a, batch),
    train_step,
    jax.jit(lambda p, x, y: evaluate(p, {}, x, y)),
    names,
    abstract,
    task.items_per_step(config.batch_size),
    task.flops_per_step(config.batch_size, n_params) * len(configs),
    _peak_flops(config),
  ), state


def _born_stacked(config, params, build_tx, values, mesh, key):
  """(state, shardings): the K runs' fresh states, stacked on a leading run axis (not
  sharded), made by one jitted init vmapped over the runs' hyperparameters. The
  params, their EMA and every params-like part of the optimizer state take the
  params' shardings; the rest is replicated."""
  hps = {n: jnp.asarray([v[n] for v in values], jnp.float32) for n in values[0]}
  rng, ema = jax.random.key_data(key), bool(config.ema_decay)
  one = lambda p, hp: initial_state(p, build_tx(hp).init(p), rng, ema=ema)
  stacked = lambda s: NamedSharding(mesh, P(None, *s.spec))
  per_param = jax.tree.map(lambda x: stacked(x.sharding), params)
  everywhere = NamedSharding(mesh, P())
  member = jax.eval_shape(one, params, values[0])
  shardings = jax.tree.map(lambda _: everywhere, member)
  shardings["params"] = per_param
  if ema:
    shardings["ema"] = per_param
  shardings["opt_state"] = _like_params(member["opt_state"], params, per_param, everywhere)
  init = jax.jit(jax.vmap(one, in_axes=(None, 0)), out_shardings=shardings)
  return init(params, hps), shardings


def _like_params(tree, params, per_param, otherwise):
  """Shardings for an optimizer state: each subtree shaped like the params (Adam's
  moments) takes the params' shardings leaf by leaf; every other leaf `otherwise`."""
  params_def = jax.tree.structure(params)
  is_params = lambda x: jax.tree.structure(x) == params_def

  def one(x):
    if not is_params(x):
      return otherwise
    pick = lambda a, p, s: s if a.shape == p.shape else otherwise
    return jax.tree.map(pick, x, params, per_param)

  return jax.tree.map(one, tree, is_leaf=is_params)


def _unstacked(s: NamedSharding) -> NamedSharding:
  return NamedSharding(s.mesh, P(*s.spec[1:]))


def _compile_train_step(config, objective, build_tx, values, state, shardings, source, rows):
  """The jitted step of the K runs: vmapped over their states and, when they differ,
  their optimizer hyperparameters (one run's are constants of the program)."""
  hps = (
    {}
    if len(values) == 1
    else {n: jnp.asarray([v[n] for v in values], jnp.float32) for n in values[0]}
  )
  make = lambda hp: make_train_step(
    objective,
    build_tx(hp or None),
    config.ema_decay,
    dropout=config.model.dropout > 0,
    max_nonfinite=config.max_nonfinite,
    accum_steps=config.grad_accum_steps,
  )
  vmapped = _over_runs(lambda s, hp, x, y: make(hp)(s, x, y), len(values))
  shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in source.batch(0, rows)]
  names = sorted(jax.eval_shape(vmapped, state, hps, *shapes)[1])

  def step(state, inputs, targets):
    state, metrics = vmapped(state, hps, inputs, targets)
    return state, jnp.stack([metrics[n].astype(jnp.float32) for n in names], axis=-1)

  # The state keeps its shardings (out_shardings); inputs arrive placed, so no
  # in_shardings: that keeps jit's fast C++ dispatch path.
  return jax.jit(step, out_shardings=(shardings, None), donate_argnums=0), names


def _over_runs(fn, k: int):
  """fn(state, hp, x, y) over the leading run axis of state (and hp): vmapped when k > 1;
  one run is fn on its slice, so it computes exactly what a run alone does (vmap's
  batched reductions may round differently)."""
  if k > 1:
    return jax.vmap(fn, in_axes=(0, 0, None, None))
  return lambda s, hp, x, y: jax.tree.map(lambda a: a[None], fn(_member(s, 0), hp, x, y))


def restore_and_open_writers(s: Setup, runs, state, log) -> dict:
  """The runs' state at the newest step all of them have a readable checkpoint of (the
  fresh `state` if none), and each run's metrics writer opened at that step."""
  found = _restore_common([r.ckpt for r in runs], s.abstract, log)
  if found is not None:
    state = jax.device_put(_stack(found), jax.tree.map(lambda x: x.sharding, state))
    log(f"resumed {', '.join(r.workdir for r in runs)} at step {int(found[0]['step'])}")
  start = int(state["step"][0])
  for r in runs:
    r.writer = metrics_lib.Writer(r.workdir, resume_step=start)
  return state


def _stop_if_signalled(preemption, step: int) -> None:
  """A signal during the setup or restore ends the run before it compiles its step:
  it resumes from what is on disk, the checkpoint of `step` (none at step 0)."""
  if preemption.signal is not None:
    done = "checkpointed" if step else "nothing trained yet"
    raise Preempted(
      f"{preemption.signal} at step {step}: {done}; run the same command again to resume"
    )


def loop(s: Setup, runs, state, preemption, log) -> None:
  """Step until config.steps, every run stopped, or a preemption signal.

  Every log_every steps the pending metrics come to the host (the loop's one wait for
  the devices). They are written while the next step runs, unless this step also
  evaluates, checkpoints, stops or is signalled: a checkpoint never precedes its
  metrics, so a resume never leaves a gap."""
  c = s.config
  step = int(state["step"][0])
  offset = int(state["data_offset"][0])  # batches skipped by rewinds, on the host
  progress = metrics_lib.Progress(c.steps, step)
  pending, unwritten, since, rewound_to = [], None, time.time(), None
  try:
    while step < c.steps and any(r.active for r in runs):
      x, y = s.source.batch(step + offset, s.rows)
      state, m = s.train_step(state, s.put(x), s.put(y))
      step += 1
      pending.append((step, m))  # one [K, n] array per step: one transfer when logging
      if unwritten:
        _log(s, runs, unwritten, progress)
        unwritten = None
      evaluate = step % c.eval_every == 0 or step == c.steps
      saves = step % c.checkpoint_every == 0
      signalled = preemption.signal is not None
      if step % c.log_every and not (evaluate or saves or signalled):
        continue
      interval = _fetch(s, pending, since)
      pending, since = [], time.time()
      hit = np.asarray(jax.device_get(state["streak_hit"]))
      if not (evaluate or saves or signalled or hit.any()):
        unwritten = interval
        continue
      evals = _evaluate(s, state, len(runs)) if evaluate else None
      _log(s, runs, interval, progress, evals, durable=saves or signalled)
      if hit.any() and c.rewind_skip:  # (one run: packed runs cannot rewind)
        try:
          state, step, offset = _rewind(c, state, runs[0], s, rewound_to, log)
        except TrainingStopped as err:
          _stop_run(runs[0], str(err), log)
          break
        rewound_to = step
        continue
      for i in np.flatnonzero(hit):
        if runs[i].active:
          _checkpoint_and_stop(c, step, runs[i], _member(state, i), log)
      if signalled and step < c.steps:
        _save_all(runs, step, state, force=True)
        raise Preempted(
          f"{preemption.signal} at step {step}: checkpointed; run the same command again to resume"
        )
      if saves:  # (asking Orbax every step costs a sync)
        _save_all(runs, step, state)
    _save_all(runs, c.steps, state, force=True, unless_saved=True)
  finally:
    progress.close()


def _fetch(s: Setup, pending, since) -> tuple:
  """(the pending steps' [(step, [K, n] metrics)] on the host, their timing). The
  steps' time runs from `since` (the last fetch) until then: dispatch is asynchronous,
  so only then have the steps finished."""
  fetched = jax.device_get(pending)
  elapsed = max(1e-9, time.time() - since)
  timing = {
    "items_per_s": len(fetched) * s.items_per_step / elapsed,
    "step_time_s": elapsed / len(fetched),
    "model_tflops_per_s": s.flops_per_step * len(fetched) / elapsed / 1e12,
  }
  if s.peak_flops:
    timing["mfu"] = s.flops_per_step * len(fetched) / elapsed / (s.peak_flops * jax.device_count())
  return fetched, timing


def _log(s: Setup, runs, interval, progress, evals=None, durable=False) -> None:
  """Write a fetched interval's metrics (and the evals of its last step) for every
  active run, and redraw the progress line."""
  fetched, timing = interval
  last_step = fetched[-1][0]
  for step, table in fetched:
    for i, r in enumerate(runs):
      if r.active:
        r.last = {n: float(v) for n, v in zip(s.metric_names, table[i])}
        r.last.update(timing)
        if step == last_step and evals:
          r.last.update(evals[i])
        r.writer.write(step, r.last)
  for r in runs:
    if r.active:
      r.writer.flush(durable=durable)
  active = [r for r in runs if r.active]
  if active:
    progress.update(last_step, active[0].last["loss"])


def _evaluate(s: Setup, state, k: int) -> list:
  """Held-out loss and accuracy of each of the k runs (and of their EMA params)."""
  out = [{} for _ in range(k)]
  if not s.config.eval_batches:
    return out
  for name, params in (("eval", state["params"]),) + (
    (("eval_ema", state["ema"]),) if "ema" in state else ()
  ):
    results = [
      s.eval_step(params, s.put(x), s.put(y))
      for x, y in (s.source.eval_batch(i, s.rows) for i in range(s.config.eval_batches))
    ]
    losses, accs = (np.reshape(np.mean(a, axis=0), k) for a in zip(*jax.device_get(results)))
    for i in range(k):
      out[i][f"{name}_loss"] = float(losses[i])
      out[i][f"{name}_accuracy"] = float(accs[i])
  return out


def _save_all(runs, step, state, force=False, unless_saved=False) -> None:
  for i, r in enumerate(runs):
    if r.active and not (unless_saved and step in r.ckpt.all_steps()):
      checkpoint.save(r.ckpt, step, _member(state, i), force=force)


def _stop_run(r: Run, message: str, log) -> None:
  """A run that cannot go on: it says why in stopped.txt and trains no more."""
  write_text(os.path.join(r.workdir, STOPPED), message + "\n")
  log(f"{r.workdir}: stopped: {message}")
  r.writer.close()
  r.active = False


def _checkpoint_and_stop(config, step, r: Run, state, log) -> None:
  """Checkpoint a run that hit max_nonfinite non-finite steps in a row, and stop it."""
  checkpoint.save(r.ckpt, step, state, force=True)  # params were never touched
  message = (
    f"{config.max_nonfinite} non-finite steps in a row at step {step}; the last "
    "good params are checkpointed. Lower the learning rate, or set rewind_skip to "
    "restart from the checkpoint and skip batches."
  )
  _stop_run(r, message, log)


def _rewind(config, state, r: Run, s: Setup, rewound_to, log):
  """K non-finite steps in a row and rewind_skip > 0: back to the last checkpoint before
  them, and on past the bad batches. Returns (state, step, data offset); TrainingStopped
  if there is no such checkpoint, or the same one was rewound to before."""
  k = config.max_nonfinite
  r.ckpt.wait_until_finished()
  now, streak = int(state["step"][0]), int(state["nonfinite"][0])
  # A streak still going began `streak` steps ago; one that already ended began at the
  # earliest max_nonfinite - 1 steps before the previous check.
  first_bad = now - streak + 1 if streak else now - config.log_every - k + 1
  step, restored = checkpoint.restore_latest(r.ckpt, s.abstract, log, max_step=first_bad - 1)
  if restored is None:
    raise TrainingStopped(
      f"{k} non-finite steps in a row and no checkpoint before step {first_bad} to rewind to"
    )
  if step == rewound_to:
    raise TrainingStopped(
      f"non-finite steps again after rewinding to step {step}; "
      "the data is not the cause: lower the learning rate"
    )
  for newer in [n for n in r.ckpt.all_steps() if n > step]:
    r.ckpt.delete(newer)
  # The next batch is the one after the bad ones, plus rewind_skip more.
  skip = int(state["data_offset"][0]) + config.rewind_skip + now - step
  restored.update(
    data_offset=jnp.asarray(skip, jnp.int32),
    nonfinite=jnp.zeros([], jnp.int32),
    streak_hit=jnp.zeros([], jnp.bool_),
  )
  log(f"{k} non-finite steps in a row: rewound to step {step}, skipping ahead {skip} batches")
  r.writer.close()
  r.writer = metrics_lib.Writer(r.workdir, resume_step=step)
  state = jax.device_put(_stack([restored]), jax.tree.map(lambda x: x.sharding, state))
  return state, step, skip


def _restore_common(ckpts, abstract, log):
  """Each run's state at the newest step all of them have a readable checkpoint of."""
  found = [checkpoint.restore_latest(c, abstract, log) for c in ckpts]
  steps = [n for n, _ in found]
  if None in steps:
    common = None
  elif len(set(steps)) == 1:
    return [state for _, state in found]
  else:  # a packed run killed between its runs' saves
    common = min(steps)
    found = [checkpoint.restore_latest(c, abstract, log, max_step=common) for c in ckpts]
    if any(n is None for n, _ in found):
      common = None
  for c in ckpts:  # Orbax does not save a step older than its newest one
    for newer in [n for n in c.all_steps() if common is None or n > common]:
      c.delete(newer)
  return None if common is None else [state for _, state in found]


def _stack(members):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *members)


def _member(state, i):
  return jax.tree.map(lambda x: x[i], state)


def _read(path) -> str:
  with open(path) as f:
    return f.read().strip()


def _process_rows(batch_size: int):
  """The rows of the global batch this process reads (all of them on one host)."""
  n, i = jax.process_count(), jax.process_index()
  return None if n == 1 else slice(i * batch_size // n, (i + 1) * batch_size // n)


def _put(local, sharding):
  if jax.process_count() == 1:
    return jax.device_put(local, sharding)
  return jax.make_array_from_process_local_data(sharding, local)


def _peak_flops(config) -> float:
  if config.peak_flops:
    return config.peak_flops
  kind = jax.devices()[0].device_kind
  return next((v for k, v in PEAK_FLOPS.items() if k in kind), 0.0)
