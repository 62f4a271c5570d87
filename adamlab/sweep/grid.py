"""Sweep grids: a base config, fixed overrides and axes -> runs with stable ids.

A sweep file is Python with `get_sweep(arg)` returning a plain dict:

    dict(base="configs/gpt.py:mup",               # the experiment config (path:presets)
         fixed={"steps": 200},                      # overrides every run shares
         axes=[{"parametrization": ["sp", "mup"]},  # the product of the axes; fields
               {"model.width": [64, 128]},          # inside one axis are zipped
               {"optimizer.learning_rate": [1e-3, 3e-3]}],
         best_of="optimizer.learning_rate",         # `adamlab results`: best value per group
         metric="eval_loss")                        # ... by this final metric

A run's id comes from its grid values only, so re-running a sweep finds its runs again.
"""

import hashlib
import importlib.util
import itertools
import json
import os
import re

from adamlab.train.config import load
from adamlab.errors import ConfigError


def load_sweep(path_arg: str) -> dict:
  """The dict of a sweep file `path[:arg]`."""
  return load_spec(path_arg, "get_sweep", dict(fixed={}, axes=[], best_of=None, metric="eval_loss"))


def load_spec(path_arg: str, getter: str, defaults: dict) -> dict:
  """`getter(arg)` of the Python file `path[:arg]`: a dict with `base` and `defaults`' keys."""
  path, _, arg = path_arg.partition(":")
  if not os.path.isfile(path):
    raise ConfigError("--config", path, f"an existing file defining {getter}(arg)")
  try:
    spec = importlib.util.spec_from_file_location("adamlab_spec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = getattr(module, getter)(arg)
  except ConfigError:
    raise
  except Exception as err:
    raise ConfigError(f"--config: {path}: {type(err).__name__}: {err}") from err
  keys = ("base", *defaults)
  for key in out:
    if key not in keys:
      raise ConfigError(f"{getter[4:]}.{key}", out[key], "a known key: " + ", ".join(keys))
  if not isinstance(out.get("base"), str):
    raise ConfigError(
      f"{getter[4:]}.base", out.get("base"), "a config path like configs/gpt.py:mup"
    )
  return {**defaults, **out}


def runs(sweep: dict) -> list:
  """[(run_id, grid values {field: value})] in grid order."""
  axes = []
  for i, axis in enumerate(sweep["axes"]):
    if not isinstance(axis, dict) or not axis:
      raise ConfigError(f"sweep.axes[{i}]", axis, "a non-empty dict of field -> list of values")
    lengths = {len(v) if isinstance(v, (list, tuple)) else -1 for v in axis.values()}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
      raise ConfigError(f"sweep.axes[{i}]", axis, "lists of values of one common, non-zero length")
    fields = list(axis)
    axes.append([dict(zip(fields, values)) for values in zip(*axis.values())])
  out = []
  for combo in itertools.product(*axes):
    values = {k: v for part in combo for k, v in part.items()}
    out.append((run_id(values), values))
  ids = [r for r, _ in out]
  if len(set(ids)) != len(ids):
    raise ConfigError("sweep.axes", sweep["axes"], "a grid whose runs all differ")
  return out


def run_id(values: dict) -> str:
  """A readable, stable id: short field names and values, plus a hash of all of them."""
  canonical = json.dumps(values, sort_keys=True)
  short = "_".join(f"{k.split('.')[-1]}={_text(v)}" for k, v in values.items())
  short = re.sub(r"[^A-Za-z0-9=._-]", "", short)[:80]
  return f"{short}-{hashlib.sha1(canonical.encode()).hexdigest()[:8]}"


def _text(v):
  return f"{v:.4g}" if isinstance(v, float) else str(v)


def flags(values: dict) -> list:
  """Config override flags for adamlab train."""
  return [f"--config.{k}={_flag_value(v)}" for k, v in values.items()]


def _flag_value(v):
  return repr(v) if isinstance(v, float) else str(v)


def run_config(sweep: dict, values: dict):
  """The full experiment config of one run (validated field names and types)."""
  config, _ = load(["--config=" + sweep["base"]] + flags({**sweep["fixed"], **values}))
  return config
