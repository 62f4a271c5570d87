"""Experiment configs: the shared base of configs/*.py, presets, and loading with overrides.

A config file is Python with `get_config(arg)` (big_vision style); `arg` is what
follows ':' in `--config configs/gpt.py:mup,stable_adamw`, a list of presets.
Overrides use ml_collections' flag syntax: `--config.optimizer.b2=0.95`.
"""

import os
import re

import ml_collections
from absl import flags
from ml_collections import config_flags

from adamlab import data, models, optim
from adamlab.train import mesh, metrics, optimizer
from adamlab.errors import ConfigError


def base(model_name: str) -> ml_collections.ConfigDict:
  """The defaults of an experiment config for `model_name`."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # init and data seed
  config.steps = 1000  # training steps
  config.batch_size = 32  # global batch size
  config.grad_accum_steps = (
    1  # microbatches per step, gradients summed in float32 (batch_size / this each)
  )
  config.log_every = 10  # metrics are fetched from the devices every this many steps
  config.eval_every = 100  # held-out loss and accuracy
  config.eval_batches = 4  # held-out batches per evaluation
  config.checkpoint_every = 200  # Orbax checkpoint interval (and always at the end)
  config.keep_checkpoints = 3  # newest checkpoints kept
  config.plots = True  # loss.png, lr.png and rms.png in the run directory at the end
  config.ema_decay = 0.0  # EMA of the weights, evaluated too (0 = off)
  config.max_nonfinite = 5  # this many non-finite steps in a row stop the run (or rewind)
  config.rewind_skip = (
    0  # > 0: on max_nonfinite, restart from the checkpoint, skip this many batches
  )
  config.peak_flops = 0.0  # per-device peak FLOP/s for MFU (0: known GPUs/TPUs, else no MFU)
  config.distributed = False  # jax.distributed.initialize() for multi-host runs
  config.wandb = metrics.wandb_config()  # Weights & Biases beside TensorBoard (mode off)
  config.mesh = mesh.default_config()
  config.data = data.default_config()
  config.parametrization = "sp"  # sp, ntk, mup, mfp or mup_tp5 (model and optimizer share it)
  config.alignment = "full"  # full or none: the learning-rate exponents' assumption
  config.model = models.default_config(model_name)
  config.optimizer = optimizer.default_config()
  config.optimizer.total_steps = config.get_ref("steps")
  return config


def with_presets(config, arg: str) -> ml_collections.ConfigDict:
  """Apply `arg`, comma-separated presets, last (so they win over a file's defaults).

  A preset names a parametrization (sp, mup, ...) or an optimizer (adamw, ...).
  """
  for preset in filter(None, (arg or "").split(",")):
    if preset in optim.PARAMETRIZATIONS:
      config.parametrization = preset
    elif preset in optimizer.OPTIMIZERS:
      config.optimizer.name = preset
    else:
      raise ConfigError(
        "config preset", preset, tuple(optim.PARAMETRIZATIONS) + tuple(optimizer.OPTIMIZERS)
      )
  return config


def load(argv) -> tuple:
  """Parse `--config FILE[:ARG]` and `--config.a.b=v` out of argv.

  Returns (config, remaining argv). Unknown fields, wrong types, missing files and
  syntax errors in the config file raise ConfigError with one line.
  """
  ours, rest, i = [], [], 0
  while i < len(argv):  # accept "--config path" as well as "--config=path"
    if argv[i] == "--config" and i + 1 < len(argv):
      ours.append("--config=" + argv[i + 1])
      i += 2
      continue
    (ours if argv[i].startswith("--config") else rest).append(argv[i])
    i += 1
  if not any(a.startswith("--config=") for a in ours):
    raise ConfigError("--config", None, "a config file, e.g. configs/gpt.py:mup")
  path = next(a for a in ours if a.startswith("--config=")).split("=", 1)[1].split(":")[0]
  if not os.path.isfile(path):
    raise ConfigError("--config", path, "an existing config file, e.g. configs/gpt.py")
  joined = ["adamlab"] + ours
  holder = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, flag_values=holder, lock_config=True, sys_argv=joined
  )
  try:
    holder(joined)
    config = holder.config
  except Exception as err:  # absl, ml_collections or the config file itself
    raise _explain(err, ours) from err
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError("--config", path, "a file whose get_config returns a ConfigDict")
  return config, rest


def _explain(err: Exception, ours) -> ConfigError:
  """The most telling one-line ConfigError for a failure while loading a config."""
  chain = []
  while err is not None and err not in chain:
    chain.append(err)
    err = err.__cause__ or err.__context__
  for e in reversed(chain):  # the original, not a copy that a flag parser re-raised
    if isinstance(e, ConfigError):
      return e
  for e in chain:
    if isinstance(e, (AttributeError, KeyError)):
      found = re.search(r"'([A-Za-z0-9_]+)", str(e))
      name = found.group(1) if found else str(e)
      flag = next(
        (a.split("=")[0].lstrip("-") for a in ours if a.split("=")[0].endswith("." + name)), name
      )
      hint = re.search(r'Did you mean "([^"]+)"', str(e))
      return ConfigError(
        f"{flag}: no such field in the config"
        + (f" (did you mean {hint.group(1)}?)" if hint else "")
      )
  last = str(chain[-1]).strip().splitlines()
  return ConfigError(
    f"--config: {' '.join(ours)}: {type(chain[-1]).__name__}: {last[-1] if last else ''}"
  )
