"""What the trainer checks before it writes anything: config, mesh, data and run directory.

A user's mistake found here is a ConfigError naming the field; no run directory has
been touched yet.
"""

import importlib.util
import json
import os

import jax

from adamlab import data, models
from adamlab.errors import ConfigError, check_one_of
from adamlab.train import mesh as mesh_lib, metrics, optimizer


def check_config_mesh_and_data(config):
  """Check the config, then make its mesh and open its data: (mesh, task, source).

  Multi-host (config.distributed): call `start_distributed` first, so the mesh spans
  every process's devices."""
  check_config(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  # Every microbatch is split evenly over the data-parallel devices.
  per_step = config.grad_accum_steps * mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % per_step:
    raise ConfigError(
      "batch_size",
      config.batch_size,
      f"a multiple of grad_accum_steps x mesh data x fsdp ({per_step})",
    )
  return (mesh,) + open_data(config)


def start_distributed(config) -> None:
  """Join the other processes of a multi-host run (config.distributed); else nothing."""
  if config.distributed:
    jax.distributed.initialize()


def check_config(config):
  """The checks that need neither devices nor data."""
  models.validate(config)
  if "optimizer" not in config:
    raise ConfigError("optimizer", None, "a config section (see optimizer.default_config())")
  optimizer.validate(config.optimizer)
  for field, lo in (
    ("steps", 1),
    ("batch_size", 1),
    ("grad_accum_steps", 1),
    ("log_every", 1),
    ("eval_every", 1),
    ("eval_batches", 0),
    ("checkpoint_every", 1),
    ("keep_checkpoints", 1),
    ("max_nonfinite", 1),
    ("rewind_skip", 0),
  ):
    value = config[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
      raise ConfigError(field, value, f"an integer >= {lo}")
  if config.batch_size % config.grad_accum_steps:
    raise ConfigError(
      "grad_accum_steps", config.grad_accum_steps, f"a divisor of batch_size ({config.batch_size})"
    )
  if not 0 <= config.ema_decay < 1:
    raise ConfigError("ema_decay", config.ema_decay, "in [0, 1) (0 = off)")
  if "wandb" in config:  # (a config built without base(): W&B is off)
    check_wandb(config.wandb)


def check_wandb(section) -> None:
  """W&B's mode is one of WANDB_MODES, and wandb is installed when it is on."""
  check_one_of("wandb.mode", section.mode, metrics.WANDB_MODES)
  if section.mode != "off" and importlib.util.find_spec("wandb") is None:
    raise ConfigError(
      "wandb.mode", section.mode, "'off' unless wandb is installed (pip install 'adamlab[wandb]')"
    )


def open_data(config):
  """(task, source): the model's task and the batch source of its data, which must
  hold the kind of examples the task reads, in the shape the model takes."""
  task = models.task(config.model)
  if data.kind(config.data.name) != task.data_kind:
    raise ConfigError(
      "data.name", config.data.name, f"a {task.data_kind} data set for model {config.model.name!r}"
    )
  source = data.source(config)
  task.check_data(source)
  return task, source


def pack_key(config) -> str:
  """Configs with the same key differ only in `optimizer.hyperparams` and can be packed."""
  c = json.loads(config.to_json())
  for k in optimizer.hyperparams(config.optimizer):
    c["optimizer"].pop(k, None)
  return json.dumps(c, sort_keys=True)


def check_pack(configs, workdirs):
  """K runs packed into one program: distinct directories, configs that differ only in
  optimizer scalars, and no rewinds (the runs share their batches)."""
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise ConfigError("--workdir", workdirs, "one distinct directory per packed run")
  if len(configs) > 1:
    fields = ", ".join("optimizer." + k for k in optimizer.hyperparams(configs[0].optimizer))
    if any(pack_key(c) != pack_key(configs[0]) for c in configs[1:]):
      raise ConfigError("pack", [w for w in workdirs], f"runs that differ only in {fields}")
    if configs[0].rewind_skip:
      raise ConfigError(
        "rewind_skip", configs[0].rewind_skip, "0 when runs are packed (they share their batches)"
      )


def check_workdir(workdir: str, config) -> bool:
  """True if workdir holds a run of this config (resume); error if another config's.

  A field the saved config lacks (written before the field existed) matches its
  default value, so a run started by an older adamlab resumes.
  """
  added = {
    None: {"grad_accum_steps": 1, "plots": True},
    "data": data.default_config().to_dict(),
    "model": models.default_config(config.model.name).to_dict(),
    "optimizer": optimizer.default_config().to_dict(),
    "wandb": metrics.wandb_config().to_dict(),
  }
  return check_dir(workdir, "config.json", json.loads(config.to_json()), "run", added)


def check_dir(workdir: str, name: str, spec: dict, what: str, added=None) -> bool:
  """True if workdir holds `spec` in its JSON file `name` (resume it); False if workdir is
  new or empty; a ConfigError if it is a file, or holds something else. added: {section:
  {field: default}} (section None: top-level fields); a field missing from the saved file
  matches its default."""
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
    if section is None:  # top-level fields
      saved = {**defaults, **saved}
    elif isinstance(saved.get(section, {}), dict):  # (a section it lacks: all defaults)
      saved[section] = {**json.loads(json.dumps(defaults)), **saved.get(section, {})}
  diff = _first_difference(saved, json.loads(json.dumps(spec)))
  if diff:
    raise ConfigError(
      "--workdir",
      workdir,
      f"a {what} of the same config to resume it (it differs at {diff}); use a new --workdir",
    )
  return True


def _first_difference(a, b, prefix=""):
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
      if d:
        return d
    return ""
  return "" if a == b else prefix.rstrip(".")
