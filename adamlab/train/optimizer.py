"""The `optimizer` section of an experiment config, and the optimizer it builds.

One registry, `OPTIMIZERS`, says for each optimizer name its alias, its
parametrization family and the scalar hyperparameters it injects. `build` takes the
section, the parametrization table of the params and the params. The hyperparameters
are injected (`optax.inject_hyperparams`), so the learning rate of every step is in
the state and packed runs can be vmapped over them. The aliases check their own
arguments; `validate` reuses those checks, naming the config field.
"""

import inspect
from typing import Callable, NamedTuple

import jax
import ml_collections
import optax

from adamlab import models, optim
from adamlab.optim import _checks  # the aliases' own argument checks
from adamlab.optim.muon import check_arguments as _muon_arguments
from adamlab.errors import ConfigError, check_one_of
from adamlab.optim.skip_spikes import METRICS as SKIP_METRICS


class Optimizer(NamedTuple):
  alias: Callable  # (learning_rate, **hyperparams, mask, parametrization, weight_decay_mode)
  family: str  # the parametrization family: optim.parametrize's `optimizer`
  hyperparams: tuple  # scalar arguments it injects (and a sweep may vmap over)


def _adafactor_clip_threshold(
  learning_rate,
  weight_decay,
  clip_threshold=1.0,
  mask=None,
  *,
  parametrization=None,
  weight_decay_mode="coupled",
):
  """`optim.adafactor` under the config's name for its `clipping_threshold`:
  `clip_threshold`, shared with stable_adamw, and the name it is injected under (a
  checkpoint's state holds it). Clipping is always on here: 1 is its default."""
  return optim.adafactor(
    learning_rate,
    clipping_threshold=clip_threshold,
    weight_decay=weight_decay,
    mask=mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )


def _muon(
  learning_rate,
  beta,
  b1,
  b2,
  eps,
  weight_decay,
  mask=None,
  *,
  parametrization=None,
  weight_decay_mode="coupled",
  shape="spectral",
):
  """Muon on the hidden matrices, Adam (b1, b2, eps) on the rest (`optim.muon`).
  Without a table (`validate`, which has none) only the arguments are checked;
  `build` always has one."""
  if parametrization is None:
    _muon_arguments(learning_rate, beta, 5, eps, shape, b1, b2, None)
    _checks.scalar_or_schedule("weight_decay", weight_decay)
    return optax.identity()
  return optim.muon(
    learning_rate,
    beta,
    eps=eps,
    parametrization=parametrization,
    shape=shape,
    adam_b1=b1,
    adam_b2=b2,
    weight_decay=weight_decay,
    mask=mask,
    weight_decay_mode=weight_decay_mode,
  )


OPTIMIZERS = {
  "adamw": Optimizer(optim.adamw, "adam", ("b1", "b2", "eps", "weight_decay")),
  "stable_adamw": Optimizer(
    optim.stable_adamw, "adam", ("b1", "b2", "eps", "weight_decay", "clip_threshold")
  ),
  "adam_atan2": Optimizer(optim.adam_atan2, "adam", ("b1", "b2", "a", "b", "weight_decay")),
  "lion": Optimizer(optim.lion, "adam", ("b1", "b2", "weight_decay")),
  "sgd": Optimizer(optim.sgd, "sgd", ("momentum", "weight_decay")),
  "adafactor": Optimizer(
    _adafactor_clip_threshold, "adafactor", ("weight_decay", "clip_threshold")
  ),
  "muon": Optimizer(_muon, "muon", ("beta", "b1", "b2", "eps", "weight_decay")),
}
# How decoupled weight decay meets the learning rate (`optim.with_learning_rate`), and
# "timescale": lambda from the weights' EMA timescale (Wang and Aitchison).
WEIGHT_DECAY_MODES = optim.DECAY_MODES + ("timescale",)


def family(name: str, muon_shape: str = "spectral") -> str:
  """The parametrization family of optimizer `name` (`optim.parametrize`'s
  `optimizer`): Muon's depends on its shape factor."""
  check_one_of("optimizer.name", name, tuple(OPTIMIZERS))
  check_one_of("optimizer.muon_shape", muon_shape, optim.MUON_SHAPES)
  found = OPTIMIZERS[name].family
  return "muon_rms" if found == "muon" and muon_shape == "rms" else found


def _family_of(config) -> str:
  opt = _with_defaults(config.optimizer)
  return family(opt.name, opt.muon_shape)


def _check_section(config) -> None:
  """ConfigError naming the field, for a missing or bad optimizer section."""
  if "optimizer" not in config:
    raise ConfigError("optimizer", None, "a config section (see default_config())")
  validate(config.optimizer)


def model_table(config):
  """The parametrization table of config's model for config's optimizer."""
  return models.table(config, _family_of(config))


def build_model(config, key: jax.Array):
  """(model, table): config's model, initialized from the table of config's optimizer.

  Checks the optimizer section first (ConfigError naming the field)."""
  _check_section(config)
  return models.build(config, key, _family_of(config))


def build_params(config, key: jax.Array, shardings=None):
  """(apply, params, table): config's model as a pure function and its params, made
  inside one jit where `shardings` (a function of the abstract model) places them
  (`models.build_params`). Checks the optimizer section first."""
  _check_section(config)
  return models.build_params(config, key, _family_of(config), shardings)


def default_config() -> ml_collections.ConfigDict:
  """The `optimizer` section of an experiment config, every field explained."""
  return ml_collections.ConfigDict(
    dict(
      name="stable_adamw",  # a key of OPTIMIZERS
      learning_rate=1e-3,  # peak learning rate (times per-leaf parametrization multipliers)
      b1=0.9,  # first-moment decay (adamw, stable_adamw, adam_atan2, lion; muon's Adam leaves)
      b2=0.95,  # second-moment decay (adamw, stable_adamw, adam_atan2, lion; muon's Adam leaves)
      eps=1e-8,  # added to sqrt(v) (adamw, stable_adamw); scaled per leaf by the parametrization
      weight_decay=0.0,  # lambda, decoupled (AdamW's); weight_decay_mode says how it meets lr
      # coupled: theta -= lr_t * k * lambda * theta, k the leaf's lr multiplier (AdamW).
      #   The default for every parametrization: AdamW's definition, bit for bit what runs
      #   made before this field did, and what the AdamW search measured lambda = 0.1 with.
      #   Under sp with one global lr it equals width_scaled; under mup, mfp, ntk (and sp
      #   with per-layer lr) a hidden leaf's decay per step shrinks with its lr, as 1/m.
      # width_scaled: lambda times m^c, so lr * lambda is the same at every width (MuAdam).
      # independent: theta -= (lr_t / lr_peak) * lambda * theta (Wortsman et al. 2023).
      # timescale: lambda = 1 / (tau * lr_peak * k * total_steps): every leaf's EMA
      #   timescale is tau of training (Wang and Aitchison); weight_decay must stay 0.
      weight_decay_mode="coupled",
      weight_decay_timescale=0.0,  # tau, a fraction of total_steps (timescale mode only)
      clip_threshold=1.0,  # StableAdamW update clipping on RMS_t; Adafactor block-RMS clip
      a=1.27,  # Adam-atan2 output scale
      b=1.0,  # Adam-atan2 denominator scale
      momentum=0.0,  # SGD heavy-ball momentum (0 = plain SGD)
      beta=0.95,  # Muon's momentum decay (Nesterov), on the hidden matrices
      muon_shape="spectral",  # Muon's shape factor: spectral, rms (Moonshot's 0.2) or none
      grad_clip_norm=1.0,  # global-norm gradient clipping before the optimizer (0 = off)
      decay_vectors=False,  # apply weight decay to biases and norm scales too
      schedule="warmup_cosine",  # constant, warmup_cosine or wsd
      warmup_steps=100,  # linear warmup from 0
      total_steps=1000,  # schedule length (the trainer links it to config.steps)
      final_lr_ratio=0.0,  # final lr / peak lr (warmup_cosine, wsd)
      decay_fraction=0.2,  # fraction of total_steps spent decaying (wsd)
      # The next two are `parametrize` arguments: whoever builds the table reads them.
      per_layer_lr=True,  # learning-rate exponents of the parametrization (False: one global lr)
      scale_eps=True,  # shrink eps with each role's gradient scale (Adam family)
      skip_spikes_k=0.0,  # skip a step above mean + k std of the recent window (0 = off)
      skip_spikes_window=100,  # accepted steps in that window; no skipping before it is full
      skip_spikes_metric="loss",  # loss, grad_norm or both (a spike in either one)
      skip_spikes_max_in_row=0,  # accept the step after this many skips in a row (0 = no limit)
    )
  )


def validate(opt) -> None:
  """Raise ConfigError naming the first bad field of an optimizer section.

  The alias, the schedule and skip_spikes check their own arguments (ValueError
  "name = value: must be ..."); each is named here as its field, "optimizer.name".
  """
  known = default_config()
  for key in opt:
    if key not in known:
      raise ConfigError(f"optimizer.{key}", opt[key], "a known field: " + ", ".join(known))
  full = _with_defaults(opt)
  check_one_of("optimizer.name", full.name, tuple(OPTIMIZERS))
  check_one_of("optimizer.schedule", full.schedule, optim.SCHEDULES)
  _validate_decay(full)
  with _as_config_error():
    _check_fields(full)
    schedule(full)
    _check_skip_spikes(full)
    OPTIMIZERS[full.name].alias(
      learning_rate=full.learning_rate, **_alias_args(full, hyperparams(full))
    )


class _as_config_error:
  """Turns an argument check's ValueError into a ConfigError on the field."""

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    if kind is not None and issubclass(kind, ValueError) and not isinstance(error, ConfigError):
      raise ConfigError(f"optimizer.{error}") from None
    return False


def _check_fields(opt) -> None:
  """Every scalar field, also those the chosen optimizer ignores (a typo there is still a
  mistake), with the aliases' checks."""
  for k in ("b1", "b2", "momentum", "beta"):
    _checks.decay_rate(k, opt[k])
  _checks.one_of("muon_shape", opt.muon_shape, optim.MUON_SHAPES)
  for k in ("eps", "weight_decay", "grad_clip_norm", "learning_rate"):
    _checks.non_negative(k, opt[k])
  for k in ("a", "b"):
    _checks.positive(k, opt[k])
  if opt.clip_threshold is not None:
    _checks.positive("clip_threshold", opt.clip_threshold)
  _checks.integer("total_steps", opt.total_steps, 1)
  _checks.integer("warmup_steps", opt.warmup_steps, 0)
  if opt.warmup_steps > opt.total_steps:
    _checks.fail("warmup_steps", opt.warmup_steps, f"<= optimizer.total_steps ({opt.total_steps})")


def _check_skip_spikes(opt) -> None:
  _checks.non_negative("skip_spikes_k", opt.skip_spikes_k)
  _checks.integer("skip_spikes_window", opt.skip_spikes_window, 2)
  _checks.one_of("skip_spikes_metric", opt.skip_spikes_metric, SKIP_METRICS)
  _checks.integer("skip_spikes_max_in_row", opt.skip_spikes_max_in_row, 0)


def _validate_decay(opt) -> None:
  mode, tau = opt.weight_decay_mode, opt.weight_decay_timescale
  check_one_of("optimizer.weight_decay_mode", mode, WEIGHT_DECAY_MODES)
  with _as_config_error():
    _checks.non_negative("weight_decay_timescale", tau)
  if mode != "timescale" and tau != 0:
    raise ConfigError(
      "optimizer.weight_decay_timescale", tau, "0 unless optimizer.weight_decay_mode is 'timescale'"
    )
  if mode == "timescale" and tau * opt.total_steps < 1:
    # A timescale under one step would remove more than the whole weight per step.
    raise ConfigError(
      "optimizer.weight_decay_timescale",
      tau,
      ">= 1 / optimizer.total_steps when optimizer.weight_decay_mode is 'timescale'",
    )
  if mode == "timescale" and opt.weight_decay != 0:
    raise ConfigError(
      "optimizer.weight_decay",
      opt.weight_decay,
      "0 when optimizer.weight_decay_mode is 'timescale' (the timescale sets it)",
    )


def _alias_args(opt, hp) -> dict:
  """The alias's keyword arguments besides learning_rate and mask, from `hp`."""
  hp = {k: v for k, v in hp.items() if k != "learning_rate"}
  if opt.name == "stable_adamw":
    hp.setdefault("clip_threshold", None)  # clipping off: static, so not injected
  if opt.name == "muon":
    hp["shape"] = opt.muon_shape
  hp["weight_decay"], hp["weight_decay_mode"] = _weight_decay(opt, hp)
  return hp


def schedule(opt, peak=None) -> optax.Schedule:
  """The learning-rate schedule of an optimizer section (peak: instead of learning_rate)."""
  peak = opt.learning_rate if peak is None else peak
  if opt.schedule == "warmup_cosine":
    return optim.warmup_cosine(peak, opt.warmup_steps, opt.total_steps, opt.final_lr_ratio)
  if opt.schedule == "wsd":
    return optim.wsd(
      peak, opt.warmup_steps, opt.total_steps, opt.final_lr_ratio, opt.decay_fraction
    )
  return optim.constant(peak, opt.warmup_steps)


def hyperparams(opt) -> dict:
  """{name: value} of the scalars runs packed into one program (jax.vmap) may differ in.

  The peak learning rate and the optimizer's injected hyperparameters; a clip_threshold
  of None (clipping off) is static, so it is not one of them. In weight_decay_mode
  "timescale" weight_decay_timescale takes weight_decay's place (the alias gets the
  decay it sets). weight_decay_mode itself is static: it picks the chain.
  """
  opt = _with_defaults(opt)
  names = OPTIMIZERS[opt.name].hyperparams
  if opt.weight_decay_mode == "timescale":
    names = tuple("weight_decay_timescale" if k == "weight_decay" else k for k in names)
  hp = {k: opt[k] for k in ("learning_rate",) + names}
  if hp.get("clip_threshold", 0) is None:
    hp.pop("clip_threshold")
  return hp


def _with_defaults(opt):
  full = default_config()
  full.update(opt)
  return full


def build(opt, table, params, values=None) -> optax.GradientTransformationExtraArgs:
  """optax transformation for `opt`, the optimizer section of an experiment config.

  Fields missing from `opt` take `default_config()`'s values. table: the
  parametrization table of these params (`parametrize`), or None for plain SP (every
  multiplier 1). params: arrays or shapes; weight decay skips vectors (biases, norm
  scales) unless opt.decay_vectors. values: {name: scalar} replacing some of
  `hyperparams(opt)`; they may be traced, which is how packed runs vmap one optimizer
  over their hyperparameters. The result takes extra args: pass `loss=` to update
  (skip_spikes reads it). Weight decay follows opt.weight_decay_mode (see
  `default_config`, `optim.with_learning_rate`).
  """
  validate(opt)
  opt = _with_defaults(opt)
  if table is None and OPTIMIZERS[opt.name].family == "muon":
    raise ConfigError(
      "optimizer.name",
      opt.name,
      "given a parametrization table (Muon's leaves come from its roles)",
    )
  mask = None if opt.decay_vectors else jax.tree.map(lambda p: len(p.shape) >= 2, params)
  hp = {**hyperparams(opt), **(values or {})}
  # inject_hyperparams injects the alias's numeric arguments (the registry's
  # hyperparams) and evaluates schedules (the learning rate, an independent decay) at
  # each step.
  args = _alias_args(opt, hp)
  # Strings (weight_decay_mode, Muon's shape) are static: they pick the chain. So is every
  # argument the registry does not name (optax.adamw's eps_root): left at its default, it
  # would be injected too, and the state (what a checkpoint holds) would change with it.
  named = {"learning_rate", *args, *OPTIMIZERS[opt.name].hyperparams}
  fixed = [n for n in inspect.signature(OPTIMIZERS[opt.name].alias).parameters if n not in named]
  static = tuple(fixed) + tuple(k for k, v in args.items() if isinstance(v, str))
  alias = optax.inject_hyperparams(OPTIMIZERS[opt.name].alias, static_args=static)
  tx = alias(
    learning_rate=schedule(opt, hp["learning_rate"]),
    mask=mask,
    parametrization=table,
    **args,
  )
  if opt.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  if opt.skip_spikes_k > 0:  # outermost: it sees the loss and the raw gradients
    tx = optim.skip_spikes(
      tx,
      opt.skip_spikes_k,
      opt.skip_spikes_window,
      opt.skip_spikes_metric,
      opt.skip_spikes_max_in_row,
    )
  return optax.with_extra_args_support(tx)


def _weight_decay(opt, hp):
  """(the alias's weight_decay, its weight_decay_mode) for opt.weight_decay_mode; pops
  the decay's entry from hp (its value may be traced).

  timescale (Wang and Aitchison 2024): AdamW's weights are an EMA of their updates
  with timescale tau_iter = 1 / (eta lambda) iterations, eta the weight's learning
  rate, here its peak lr_peak * k (k: its multiplier, width, depth and constants
  alike). Asking every leaf for tau_iter = tau * T gives lambda = 1 / (tau lr_peak k T):
  a muP hidden leaf's lambda grows as m, as the paper prescribes under muP. Its decay
  per step, lr_t k lambda = (lr_t / lr_peak) / (tau T), is an independent decay.
  """
  if opt.weight_decay_mode in ("coupled", "width_scaled"):
    return hp.pop("weight_decay"), opt.weight_decay_mode
  unit = schedule(opt, 1.0)  # lr_t / lr_peak, without dividing by a traced peak
  if opt.weight_decay_mode == "independent":
    lam = hp.pop("weight_decay")
    # Always a schedule, also for lambda = 0: runs packed together must have states of
    # one structure, and inject_hyperparams keeps a schedule's state apart.
    return (lambda count: lam * unit(count)), "independent"
  # lr_t * k * lambda with lambda = 1 / (tau * lr_peak * k * T): k and lr_peak cancel.
  tau, steps = hp.pop("weight_decay_timescale"), opt.total_steps
  return (lambda count: unit(count) / (tau * steps)), "independent"
