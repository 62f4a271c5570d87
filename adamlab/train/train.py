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

from adamlab import data, models, optim
from adamlab.optim.config_error import ConfigError
from adamlab.train import checkpoint, mesh as mesh_lib, metrics as metrics_lib
from adamlab.train.step import make_eval_step, make_train_step

# Peak dense bf16 FLOP/s per device, for the MFU estimate.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v4": 275e12,
              "TPU v5 lite": 197e12, "TPU v5": 459e12}


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
  """True if workdir holds a run of this config (resume); error if another config's."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError("--workdir", workdir, "a directory (this is a file)")
  if not os.path.exists(path):
    if os.path.isdir(workdir) and os.listdir(workdir):
      raise ConfigError("--workdir", workdir, "a new or empty directory, or an adamlab run")
    return False
  try:
    with open(path) as f:
      saved = json.load(f)
  except ValueError as err:
    raise ConfigError("--workdir", workdir, f"a run with a readable config.json ({err})")
  now = json.loads(config.to_json())
  diff = _first_difference(saved, now)
  if diff:
    raise ConfigError("--workdir", workdir,
                      f"a run of the same config to resume it (it differs at {diff}); "
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
  mesh, source = validate(config)
  resuming = check_workdir(workdir, config)
  # From here on, the run directory is ours.
  os.makedirs(workdir, exist_ok=True)
  if not resuming:
    tmp = os.path.join(workdir, "config.json.tmp")
    with open(tmp, "w") as f:
      f.write(config.to_json(indent=1))
    os.replace(tmp, os.path.join(workdir, "config.json"))

  key = jax.random.PRNGKey(config.seed)
  model, _ = models.build(config, key)
  apply, params = models.functional(model)
  params = jax.device_put(params, mesh_lib.param_shardings(model, mesh))
  tx = optim.build(config, params, models.param_shapes(config, config.model.base_width))
  objective = models.objective(config, apply)
  state = dict(params=params, opt_state=jax.jit(tx.init)(params),
               step=jnp.zeros([], jnp.int32), nonfinite=jnp.zeros([], jnp.int32),
               streak_hit=jnp.zeros([], jnp.bool_),
               data_offset=jnp.zeros([], jnp.int32), rng=jax.random.key_data(key))
  if config.ema_decay:
    state["ema"] = jax.tree.map(jnp.copy, params)
  on_mesh = lambda x: (x.sharding if isinstance(x.sharding, jax.sharding.NamedSharding)
                       and x.sharding.mesh == mesh else mesh_lib.replicated(mesh))
  state = jax.device_put(state, jax.tree.map(on_mesh, state))
  shardings = jax.tree.map(lambda x: x.sharding, state)

  ckpt = checkpoint.manager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                            config.checkpoint_every, config.keep_checkpoints)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          state)
  restored_step, restored = checkpoint.restore_latest(ckpt, abstract, log)
  if restored is not None:
    state = restored
    log(f"resumed {workdir} at step {restored_step}")
  start = int(state["step"])

  batch_sharding = mesh_lib.batch_sharding(mesh)
  rows = _process_rows(config.batch_size)
  # Test-only hook: ADAMLAB_INJECT_NONFINITE="5,6,7" makes the loss NaN on the batches
  # of those steps (batch index + 1, so a rewind that skips them escapes them).
  poison = tuple(int(s) for s in os.environ.get("ADAMLAB_INJECT_NONFINITE", "").split(",") if s)
  step_fn = make_train_step(objective, tx, config.ema_decay, dropout=config.model.dropout > 0,
                            poison_steps=poison, max_nonfinite=config.max_nonfinite)
  metric_names = sorted(jax.eval_shape(step_fn, state, *source_shapes(source, rows))[1])

  def packed_step(state, inputs, targets):
    state, metrics = step_fn(state, inputs, targets)
    return state, jnp.stack([metrics[k].astype(jnp.float32) for k in metric_names])

  # The state keeps its shardings (out_shardings); inputs arrive placed, so no
  # in_shardings: that keeps jit's fast C++ dispatch path.
  train_step = jax.jit(packed_step, out_shardings=(shardings, None), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(objective))
  put = lambda arr: _put(arr, batch_sharding)

  writer = metrics_lib.Writer(workdir, resume_step=start)
  progress = metrics_lib.Progress(config.steps, start)
  per_step_items = config.batch_size * (config.model.seq_len if config.model.name == "gpt" else 1)
  flops_per_step = _flops_per_step(config, params)
  peak = _peak_flops(config)
  pending, last, t_log = [], {}, time.time()
  step = start
  offset = int(state["data_offset"])  # batches skipped by rewinds, kept on the host
  rewound_to = None
  try:
    while step < config.steps:
      x, y = source.batch(step + offset, rows)
      state, m = train_step(state, put(x), put(y))
      step += 1
      pending.append((step, m))  # one packed vector per step: one transfer when logging
      evaluate = step % config.eval_every == 0 or step == config.steps
      # Metrics are written before any checkpoint, so a resume never leaves a gap.
      if step % config.log_every == 0 or evaluate or step % config.checkpoint_every == 0:
        fetched = [(s, dict(zip(metric_names, v))) for s, v in jax.device_get(pending)]
        elapsed = max(1e-9, time.time() - t_log)
        timing = {"items_per_s": len(fetched) * per_step_items / elapsed,
                  "step_time_s": elapsed / len(fetched),
                  "model_tflops_per_s": flops_per_step * len(fetched) / elapsed / 1e12}
        if peak:
          timing["mfu"] = flops_per_step * len(fetched) / elapsed / (peak * jax.device_count())
        eval_metrics = _evaluate(eval_step, state, source, config, rows, put) if evaluate else {}
        for s, values in fetched:
          last = {k: float(v) for k, v in values.items()}
          last.update(timing)
          if s == step:
            last.update(eval_metrics)
          writer.write(s, last)
        writer.flush(durable=step % config.checkpoint_every == 0)
        progress.update(step, last["loss"])
        pending, t_log = [], time.time()
        if int(state["streak_hit"]):
          state = _nonfinite(config, state, ckpt, abstract, log)
          step, offset = int(state["step"]), int(state["data_offset"])
          if step == rewound_to:
            raise TrainingStopped(f"non-finite steps again after rewinding to step {step}; "
                                  "the data is not the cause: lower the learning rate")
          rewound_to = step
          writer.close()
          writer = metrics_lib.Writer(workdir, resume_step=step)
          continue
      if step % config.checkpoint_every == 0:  # (asking Orbax every step costs a sync)
        checkpoint.save(ckpt, step, state)
    if config.steps not in ckpt.all_steps():
      checkpoint.save(ckpt, config.steps, state, force=True)
  finally:
    ckpt.wait_until_finished()
    ckpt.close()
    writer.close()
    progress.close()
  from adamlab.analysis import runplots
  runplots.plot_run(workdir)
  return last


def _nonfinite(config, state, ckpt, abstract, log):
  """K non-finite steps in a row: rewind to the last checkpoint and skip data, or stop."""
  k = config.max_nonfinite
  if not config.rewind_skip:
    checkpoint.save(ckpt, int(state["step"]), state, force=True)  # params were never touched
    raise TrainingStopped(
        f"{k} non-finite steps in a row at step {int(state['step'])} (max_nonfinite = "
        f"{config.max_nonfinite}); the last good params are checkpointed. Lower the learning "
        "rate, or set rewind_skip to restart from the checkpoint and skip batches.")
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


def _evaluate(eval_step, state, source, config, rows, put):
  if not config.eval_batches:
    return {}
  out = {}
  for name, params in (("eval", state["params"]),) + (
      (("eval_ema", state["ema"]),) if "ema" in state else ()):
    losses, accs = [], []
    for i in range(config.eval_batches):
      x, y = source.eval_batch(i, rows)
      loss, acc = eval_step(params, put(x), put(y))
      losses.append(loss)
      accs.append(acc)
    out[f"{name}_loss"] = float(np.mean(jax.device_get(losses)))
    out[f"{name}_accuracy"] = float(np.mean(jax.device_get(accs)))
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
