"""The trainer: one config, one run directory, resumable at any point.

    adamlab train --config configs/gpt.py:mup,stable_adamw --workdir runs/x

Everything a user can get wrong (config, mesh, data) is checked before the run
directory is touched. A run directory holds config.json, metrics.jsonl, tb/,
checkpoints/ and plots; giving the same --workdir again resumes from the newest
readable checkpoint, and metrics.jsonl is cut back to that step so no step is
written twice.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from adamlab import data, models, optim
from adamlab.files import write_text
from adamlab.errors import ConfigError
from adamlab.train import checkpoint, mesh as mesh_lib, metrics as metrics_lib
from adamlab.train.step import initial_state, make_eval_step, make_train_step

# Peak dense bf16 FLOP/s per device, for the MFU estimate.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v4": 275e12,
              "TPU v5 lite": 197e12, "TPU v5": 459e12}


STOPPED = "stopped.txt"  # in a run directory: why non-finite steps ended the run
EXIT_STOPPED = 3  # `adamlab train`'s exit code then


class TrainingStopped(RuntimeError):
  """Training cannot go on (too many non-finite steps in a row); a checkpoint is kept."""


def validate(config):
  """Check the config, mesh and data before anything is written; returns (mesh, source)."""
  check_config(config)
  if config.distributed:
    jax.distributed.initialize()
  mesh = mesh_lib.make_mesh(config.mesh)
  data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % data_parallel:
    raise ConfigError("batch_size", config.batch_size,
                      f"a multiple of mesh data x fsdp ({data_parallel})")
  return mesh, data.Source(config)


def check_config(config):
  """The checks that need neither devices nor data."""
  models.validate(config)
  for field, lo in (("steps", 1), ("batch_size", 1), ("log_every", 1), ("eval_every", 1),
                    ("eval_batches", 0), ("checkpoint_every", 1), ("keep_checkpoints", 1),
                    ("max_nonfinite", 1), ("rewind_skip", 0)):
    value = config[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
      raise ConfigError(field, value, f"an integer >= {lo}")
  if not 0 <= config.ema_decay < 1:
    raise ConfigError("ema_decay", config.ema_decay, "in [0, 1) (0 = off)")


def check_workdir(workdir: str, config) -> bool:
  """True if workdir holds a run of this config (resume); error if another config's.

  A field the saved config lacks (written before the field existed) matches its
  default value, so a run started by an older adamlab resumes.
  """
  added = {"data": data.default_config().to_dict(), "optimizer": optim.default_config().to_dict()}
  return check_dir(workdir, "config.json", json.loads(config.to_json()), "run", added)


def check_dir(workdir: str, name: str, spec: dict, what: str, added=None) -> bool:
  """True if workdir holds `spec` in its JSON file `name` (resume it); False if workdir is
  new or empty; a ConfigError if it is a file, or holds something else. added: {section:
  {field: default}}; a field missing from the saved file matches its default."""
  path = os.path.join(workdir, name)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError("--workdir", workdir, "a directory (this is a file)")
  if not os.path.exists(path):
    # (*.tmp: a file another process is writing this moment)
    if os.path.isdir(workdir) and [f for f in os.listdir(workdir) if not f.endswith(".tmp")]:
      raise ConfigError("--workdir", workdir, f"a new or empty directory, or an adamlab {what}")
    return False
  try:
    with open(path) as f:
      saved = json.load(f)
  except ValueError as err:
    raise ConfigError("--workdir", workdir, f"a {what} with a readable {name} ({err})")
  if not isinstance(saved, dict):
    raise ConfigError("--workdir", workdir, f"a {what} whose {name} is a JSON object")
  for section, defaults in (added or {}).items():
    if isinstance(saved.get(section), dict):
      saved[section] = {**json.loads(json.dumps(defaults)), **saved[section]}
  diff = _first_difference(saved, json.loads(json.dumps(spec)))
  if diff:
    raise ConfigError("--workdir", workdir,
                      f"a {what} of the same config to resume it (it differs at {diff}); "
                      "use a new --workdir")
  return True


def _first_difference(a, b, prefix=""):
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
      if d:
        return d
    return ""
  return "" if a == b else prefix.rstrip(".")


def run(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
  """Train (or resume) the run; returns the last logged metrics."""
  return run_pack([config], [workdir], log)[0]


def pack_key(config) -> str:
  """Configs with the same key differ only in `optim.hyperparams` and can be packed."""
  c = json.loads(config.to_json())
  for k in optim.hyperparams(config):
    c["optimizer"].pop(k, None)
  return json.dumps(c, sort_keys=True)


def check_pack(configs, workdirs):
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise ConfigError("--workdir", workdirs, "one distinct directory per packed run")
  if len(configs) > 1:
    fields = ", ".join("optimizer." + k for k in optim.hyperparams(configs[0]))
    if any(pack_key(c) != pack_key(configs[0]) for c in configs[1:]):
      raise ConfigError("pack", [w for w in workdirs], f"runs that differ only in {fields}")
    if configs[0].rewind_skip:
      raise ConfigError("rewind_skip", configs[0].rewind_skip,
                        "0 when runs are packed (they share their batches)")


def run_pack(configs, workdirs, log=print) -> list:
  """Train K runs that differ only in scalar optimizer hyperparameters as one program.

  With K > 1 the train step is vmapped over the runs (and their injected
  hyperparameters); every run still has its own directory, metrics and checkpoints,
  as if trained alone, and one stopped by non-finite steps is frozen while the others
  go on. K = 1 is the plain trainer. Returns each run's last logged metrics.
  """
  config, k = configs[0], len(configs)
  packed = k > 1
  check_pack(configs, workdirs)
  mesh, source = validate(config)
  for c in configs[1:]:
    check_config(c)
  resuming = [check_workdir(w, c) for c, w in zip(configs, workdirs)]
  # From here on, the run directories are ours.
  for c, w, resume in zip(configs, workdirs, resuming):
    os.makedirs(w, exist_ok=True)
    if not resume:
      write_text(os.path.join(w, "config.json"), c.to_json(indent=1))
    if os.path.exists(os.path.join(w, STOPPED)):
      os.remove(os.path.join(w, STOPPED))

  key = jax.random.PRNGKey(config.seed)
  model, _ = models.build(config, key)
  apply, params = models.functional(model)
  params = jax.device_put(params, mesh_lib.param_shardings(model, mesh))
  base = models.param_shapes(config, config.model.base_width)
  values = [optim.hyperparams(c) for c in configs]
  build_tx = lambda hp: optim.build(config, params, base, hp)
  objective = models.objective(config, apply)
  on_mesh = lambda x: (x.sharding if isinstance(x.sharding, jax.sharding.NamedSharding)
                       and x.sharding.mesh == mesh else mesh_lib.replicated(mesh))

  def fresh(hp):
    state = initial_state(params, jax.jit(build_tx(hp).init)(params),
                          jax.random.key_data(key), ema=bool(config.ema_decay))
    return jax.device_put(state, jax.tree.map(on_mesh, state))

  members = [fresh(hp) for hp in values]
  shardings = jax.tree.map(lambda x: x.sharding, members[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          members[0])
  ckpts = [checkpoint.manager(os.path.abspath(os.path.join(w, "checkpoints")),
                              config.checkpoint_every, config.keep_checkpoints)
           for w in workdirs]
  restored = _restore(ckpts, abstract, log)
  if restored is not None:
    members = restored
    log(f"resumed {', '.join(workdirs)} at step {int(members[0]['step'])}")
  start = int(members[0]["step"])
  if packed:  # a leading run axis, not sharded
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, P(None, *s.spec)), shardings)
    state = jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *members), shardings)
  else:
    state = members[0]
  del members
  member = (lambda state, i: jax.tree.map(lambda x: x[i], state)) if packed else (
      lambda state, i: state)

  batch_sharding = mesh_lib.batch_sharding(mesh)
  rows = _process_rows(config.batch_size)
  # Test-only hook: ADAMLAB_INJECT_NONFINITE="5,6,7" makes the loss NaN on the batches
  # of those steps (batch index + 1, so a rewind that skips them escapes them);
  # "grad:5,6,7" makes the gradients Inf instead.
  target, _, steps = os.environ.get("ADAMLAB_INJECT_NONFINITE", "").rpartition(":")
  poison = tuple(int(s) for s in steps.split(",") if s)
  make_step = lambda tx: make_train_step(
      objective, tx, config.ema_decay, dropout=config.model.dropout > 0, poison_steps=poison,
      poison=target or "loss", max_nonfinite=config.max_nonfinite)
  eval_step = make_eval_step(objective)
  if packed:
    hps = {n: jnp.asarray([v[n] for v in values], jnp.float32) for n in values[0]}
    vmapped = jax.vmap(lambda s, hp, x, y: make_step(build_tx(hp))(s, x, y),
                       in_axes=(0, 0, None, None))
    step_fn = lambda s, x, y: vmapped(s, hps, x, y)
    eval_step = jax.vmap(eval_step, in_axes=(0, None, None))
  else:
    step_fn = make_step(build_tx(None))
  metric_names = sorted(jax.eval_shape(step_fn, state, *source_shapes(source, rows))[1])

  def packed_step(state, inputs, targets):
    state, metrics = step_fn(state, inputs, targets)
    return state, jnp.stack([metrics[n].astype(jnp.float32) for n in metric_names], axis=-1)

  # The state keeps its shardings (out_shardings); inputs arrive placed, so no
  # in_shardings: that keeps jit's fast C++ dispatch path.
  train_step = jax.jit(packed_step, out_shardings=(shardings, None), donate_argnums=0)
  eval_step = jax.jit(eval_step)
  put = lambda arr: _put(arr, batch_sharding)

  writers = [metrics_lib.Writer(w, resume_step=start) for w in workdirs]
  progress = metrics_lib.Progress(config.steps, start)
  per_step_items = config.batch_size * (config.model.seq_len if config.model.name == "gpt" else 1)
  flops_per_step = _flops_per_step(config, params) * k
  peak = _peak_flops(config)
  active = list(range(k))  # runs not stopped by non-finite steps
  pending, last, t_log = [], [{} for _ in range(k)], time.time()
  step = start
  offset = int(state["data_offset"].reshape(-1)[0])  # batches skipped by rewinds, on the host
  rewound_to = None
  try:
    while step < config.steps and active:
      x, y = source.batch(step + offset, rows)
      state, m = train_step(state, put(x), put(y))
      step += 1
      pending.append((step, m))  # one packed vector per step: one transfer when logging
      evaluate = step % config.eval_every == 0 or step == config.steps
      # Metrics are written before any checkpoint, so a resume never leaves a gap.
      if step % config.log_every == 0 or evaluate or step % config.checkpoint_every == 0:
        fetched = [(s, np.reshape(v, (k, -1))) for s, v in jax.device_get(pending)]
        elapsed = max(1e-9, time.time() - t_log)
        timing = {"items_per_s": len(fetched) * per_step_items / elapsed,
                  "step_time_s": elapsed / len(fetched),
                  "model_tflops_per_s": flops_per_step * len(fetched) / elapsed / 1e12}
        if peak:
          timing["mfu"] = flops_per_step * len(fetched) / elapsed / (peak * jax.device_count())
        evals = _evaluate(eval_step, state, source, config, rows, put, k) if evaluate else None
        for s, table in fetched:
          for i in active:
            last[i] = {n: float(v) for n, v in zip(metric_names, table[i])}
            last[i].update(timing)
            if s == step and evals:
              last[i].update(evals[i])
            writers[i].write(s, last[i])
        for i in active:
          writers[i].flush(durable=step % config.checkpoint_every == 0)
        progress.update(step, last[active[0]]["loss"])
        pending, t_log = [], time.time()
        hit = np.reshape(jax.device_get(state["streak_hit"]), k)
        if hit.any() and config.rewind_skip:  # (never packed)
          state = _rewind(config, state, ckpts[0], abstract, log)
          step, offset = int(state["step"]), int(state["data_offset"])
          if step == rewound_to:
            raise TrainingStopped(f"non-finite steps again after rewinding to step {step}; "
                                  "the data is not the cause: lower the learning rate")
          rewound_to = step
          writers[0].close()
          writers[0] = metrics_lib.Writer(workdirs[0], resume_step=step)
          continue
        for i in [i for i in active if hit[i]]:
          message = _stop(config, step, ckpts[i], member(state, i))
          if not packed:
            raise TrainingStopped(message)
          write_text(os.path.join(workdirs[i], STOPPED), message + "\n")
          log(f"{workdirs[i]}: stopped: {message}")
          writers[i].close()
          active.remove(i)
      if step % config.checkpoint_every == 0:  # (asking Orbax every step costs a sync)
        for i in active:
          checkpoint.save(ckpts[i], step, member(state, i))
    for i in active:
      if config.steps not in ckpts[i].all_steps():
        checkpoint.save(ckpts[i], config.steps, member(state, i), force=True)
  except TrainingStopped as err:
    write_text(os.path.join(workdirs[0], STOPPED), f"{err}\n")
    raise
  finally:
    for ckpt, writer in zip(ckpts, writers):
      ckpt.wait_until_finished()
      ckpt.close()
      writer.close()
    progress.close()
  from adamlab.train import plots
  for w in workdirs:
    plots.plot_run(w)
  return last


def _restore(ckpts, abstract, log):
  """Each run's state at the newest step all of them have a readable checkpoint of."""
  found = [checkpoint.restore_latest(c, abstract, log) for c in ckpts]
  steps = [s for s, _ in found]
  if None in steps:
    common = None
  elif len(set(steps)) == 1:
    return [state for _, state in found]
  else:  # a packed run killed between its runs' saves
    common = min(steps)
    found = [checkpoint.restore_latest(c, abstract, log, max_step=common) for c in ckpts]
    if any(s is None for s, _ in found):
      common = None
  for c in ckpts:  # Orbax does not save a step older than its newest one
    for newer in [s for s in c.all_steps() if common is None or s > common]:
      c.delete(newer)
  return None if common is None else [state for _, state in found]


def _stop(config, step, ckpt, state) -> str:
  """Checkpoint a run that hit max_nonfinite non-finite steps in a row and say why it ended."""
  checkpoint.save(ckpt, step, state, force=True)  # params were never touched
  return (f"{config.max_nonfinite} non-finite steps in a row at step {step}; the last "
          "good params are checkpointed. Lower the learning rate, or set rewind_skip to "
          "restart from the checkpoint and skip batches.")


def _rewind(config, state, ckpt, abstract, log):
  """K non-finite steps in a row and rewind_skip > 0: back to the last checkpoint before
  them, and on past the bad batches."""
  k = config.max_nonfinite
  ckpt.wait_until_finished()
  now, streak = int(state["step"]), int(state["nonfinite"])
  # A streak still going began `streak` steps ago; one that already ended began at the
  # earliest max_nonfinite - 1 steps before the previous check.
  first_bad = now - streak + 1 if streak else now - config.log_every - config.max_nonfinite + 1
  step, restored = checkpoint.restore_latest(ckpt, abstract, log, max_step=first_bad - 1)
  if restored is None:
    raise TrainingStopped(f"{k} non-finite steps in a row and no checkpoint before step "
                          f"{first_bad} to rewind to")
  for newer in [s for s in ckpt.all_steps() if s > step]:
    ckpt.delete(newer)
  # The next batch is the one after the bad ones, plus rewind_skip more.
  skip = int(state["data_offset"]) + config.rewind_skip + now - step
  restored["data_offset"] = jnp.asarray(skip, jnp.int32)
  restored["nonfinite"] = jnp.zeros([], jnp.int32)
  restored["streak_hit"] = jnp.zeros([], jnp.bool_)
  log(f"{k} non-finite steps in a row: rewound to step {step}, skipping ahead {skip} batches")
  return restored


def _evaluate(eval_step, state, source, config, rows, put, k):
  """Held-out loss and accuracy of each of the k runs (and of their EMA params)."""
  out = [{} for _ in range(k)]
  if not config.eval_batches:
    return out
  for name, params in (("eval", state["params"]),) + (
      (("eval_ema", state["ema"]),) if "ema" in state else ()):
    results = [eval_step(params, put(x), put(y))
               for x, y in (source.eval_batch(i, rows) for i in range(config.eval_batches))]
    losses, accs = (np.reshape(np.mean(a, axis=0), k) for a in zip(*jax.device_get(results)))
    for i in range(k):
      out[i][f"{name}_loss"] = float(losses[i])
      out[i][f"{name}_accuracy"] = float(accs[i])
  return out


def source_shapes(source, rows):
  """ShapeDtypeStructs of one batch (inputs, targets)."""
  return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in source.batch(0, rows)]


def _process_rows(batch_size: int):
  """The rows of the global batch this process reads (all of them on one host)."""
  n, i = jax.process_count(), jax.process_index()
  return None if n == 1 else slice(i * batch_size // n, (i + 1) * batch_size // n)


def _put(local, sharding):
  if jax.process_count() == 1:
    return jax.device_put(local, sharding)
  return jax.make_array_from_process_local_data(sharding, local)


def _flops_per_step(config, params) -> float:
  """6 N per token (forward and backward), plus attention's 12 L T d for the GPT."""
  n = sum(p.size for p in jax.tree.leaves(params))
  m = config.model
  if m.name == "gpt":
    return config.batch_size * m.seq_len * (6 * n + 12 * m.depth * m.seq_len * m.width)
  if m.name == "vit":
    tokens = (m.image_size // m.patch_size) ** 2 + 1
    return config.batch_size * tokens * (6 * n + 12 * m.depth * tokens * m.width)
  return config.batch_size * 6 * n


def _peak_flops(config) -> float:
  if config.peak_flops:
    return config.peak_flops
  kind = jax.devices()[0].device_kind
  return next((v for k, v in PEAK_FLOPS.items() if k in kind), 0.0)
