"""Build an optimizer from the `optimizer` section of an experiment config.

`build` takes that section (see `default_config`), the parametrization table of the
params (`parametrize`; the caller picks the parametrization and alignment) and the
params, nothing else, so it works without the rest of adamlab. The hyperparameters are
injected (`optax.inject_hyperparams`), so the learning rate of every step is in the
state and runs can be vmapped over them.
"""

import math

import jax
import ml_collections
import optax

from adamlab.errors import ConfigError, check_one_of
from adamlab.optim import schedules
from adamlab.optim.adam_atan2 import adam_atan2
from adamlab.optim.parametrization import DECAY_MODES, with_learning_rate
from adamlab.optim.skip_spikes import METRICS as SKIP_METRICS, skip_spikes
from adamlab.optim.stable_adam import stable_adamw

OPTIMIZERS = ("adamw", "stable_adamw", "adam_atan2", "sgd", "adafactor", "lion")
# The optimizer family decides the learning-rate exponents of a parametrization.
FAMILY = {"adamw": "adam", "stable_adamw": "adam", "adam_atan2": "adam", "lion": "adam",
          "sgd": "sgd", "adafactor": "adafactor"}
# How decoupled weight decay meets the learning rate (`with_learning_rate`), and
# "timescale": lambda from the weights' EMA timescale (Wang and Aitchison).
WEIGHT_DECAY_MODES = DECAY_MODES + ("timescale",)
# Scalar hyperparameters each optimizer's alias injects (and a sweep may vmap over).
HYPERPARAMS = {
    "adamw": ("b1", "b2", "eps", "weight_decay"),
    "stable_adamw": ("b1", "b2", "eps", "weight_decay", "clip_threshold"),
    "adam_atan2": ("b1", "b2", "a", "b", "weight_decay"),
    "lion": ("b1", "b2", "weight_decay"),
    "sgd": ("momentum", "weight_decay"),
    "adafactor": ("weight_decay", "clip_threshold"),
}


def family(name: str) -> str:
  """The parametrization family of optimizer `name` (`parametrize`'s `optimizer`)."""
  check_one_of("optimizer.name", name, OPTIMIZERS)
  return FAMILY[name]


def default_config() -> ml_collections.ConfigDict:
  """The `optimizer` section of an experiment config, every field explained."""
  return ml_collections.ConfigDict(dict(
      name="stable_adamw",  # one of OPTIMIZERS
      learning_rate=1e-3,  # peak learning rate (times per-leaf parametrization multipliers)
      b1=0.9,  # first-moment decay (adamw, stable_adamw, adam_atan2, lion)
      b2=0.95,  # second-moment decay (adamw, stable_adamw, adam_atan2, lion)
      eps=1e-8,  # added to sqrt(v) (adamw, stable_adamw); scaled per leaf by the parametrization
      weight_decay=0.0,  # lambda, decoupled (AdamW's); weight_decay_mode says how it meets lr
      # coupled: theta -= lr_t * k * lambda * theta, k the leaf's lr multiplier (AdamW).
      #   The default for every parametrization: AdamW's definition, bit for bit what runs
      #   made before this field did, and what seed 004's lambda = 0.1 was measured with.
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
  ))


def validate(opt) -> None:
  """Raise ConfigError naming the first bad field of an optimizer section."""
  known = default_config()
  for key in opt:
    if key not in known:
      raise ConfigError(f"optimizer.{key}", opt[key], "a known field: " + ", ".join(known))
  get = lambda k: opt.get(k, known[k])
  check_one_of("optimizer.name", get("name"), OPTIMIZERS)
  check_one_of("optimizer.schedule", get("schedule"), schedules.SCHEDULES)
  _range("optimizer.learning_rate", get("learning_rate"), 0, None, "a finite number >= 0")
  for k in ("b1", "b2"):
    _range(f"optimizer.{k}", get(k), 0, 1, "in [0, 1)", open_hi=True)
  _range("optimizer.momentum", get("momentum"), 0, 1, "in [0, 1)", open_hi=True)
  for k in ("eps", "weight_decay", "grad_clip_norm"):
    _range(f"optimizer.{k}", get(k), 0, None, "a finite number >= 0")
  if get("clip_threshold") is not None:
    _range("optimizer.clip_threshold", get("clip_threshold"), 0, None, "None or > 0",
           open_lo=True)
  for k in ("a", "b"):
    _range(f"optimizer.{k}", get(k), 0, None, "a finite number > 0", open_lo=True)
  _range("optimizer.final_lr_ratio", get("final_lr_ratio"), 0, 1, "in [0, 1]")
  _range("optimizer.decay_fraction", get("decay_fraction"), 0, 1, "in (0, 1]", open_lo=True)
  _int("optimizer.total_steps", get("total_steps"), 1)
  _validate_decay(get)
  _range("optimizer.skip_spikes_k", get("skip_spikes_k"), 0, None,
         "a finite number >= 0 (0 = off)")
  _int("optimizer.skip_spikes_window", get("skip_spikes_window"), 2)
  check_one_of("optimizer.skip_spikes_metric", get("skip_spikes_metric"), SKIP_METRICS)
  _int("optimizer.skip_spikes_max_in_row", get("skip_spikes_max_in_row"), 0)
  _int("optimizer.warmup_steps", get("warmup_steps"), 0)
  if get("warmup_steps") > get("total_steps"):
    raise ConfigError("optimizer.warmup_steps", get("warmup_steps"),
                      f"<= optimizer.total_steps ({get('total_steps')})")


def _validate_decay(get) -> None:
  mode, tau = get("weight_decay_mode"), get("weight_decay_timescale")
  check_one_of("optimizer.weight_decay_mode", mode, WEIGHT_DECAY_MODES)
  _range("optimizer.weight_decay_timescale", tau, 0, None, "a finite number >= 0")
  if mode != "timescale" and tau != 0:
    raise ConfigError("optimizer.weight_decay_timescale", tau,
                      "0 unless optimizer.weight_decay_mode is 'timescale'")
  if mode == "timescale" and tau * get("total_steps") < 1:
    # A timescale under one step would remove more than the whole weight per step.
    raise ConfigError("optimizer.weight_decay_timescale", tau,
                      ">= 1 / optimizer.total_steps when optimizer.weight_decay_mode is "
                      "'timescale'")
  if mode == "timescale" and get("weight_decay") != 0:
    raise ConfigError("optimizer.weight_decay", get("weight_decay"),
                      "0 when optimizer.weight_decay_mode is 'timescale' (the timescale sets it)")


def _range(field, value, lo, hi, allowed, open_lo=False, open_hi=False):
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (value > lo if open_lo else value >= lo)
  ok = ok and (hi is None or (value < hi if open_hi else value <= hi))
  if not ok:
    raise ConfigError(field, value, allowed)


def _int(field, value, lo):
  if not isinstance(value, int) or isinstance(value, bool) or value < lo:
    raise ConfigError(field, value, f"an integer >= {lo}")


def schedule(opt, peak=None) -> optax.Schedule:
  """The learning-rate schedule of an optimizer section (peak: instead of learning_rate)."""
  peak = opt.learning_rate if peak is None else peak
  if opt.schedule == "warmup_cosine":
    return schedules.warmup_cosine(peak, opt.warmup_steps, opt.total_steps, opt.final_lr_ratio)
  if opt.schedule == "wsd":
    return schedules.wsd(peak, opt.warmup_steps, opt.total_steps, opt.final_lr_ratio,
                         opt.decay_fraction)
  return schedules.constant(peak, opt.warmup_steps)


def hyperparams(opt) -> dict:
  """{name: value} of the scalars runs packed into one program (jax.vmap) may differ in.

  The peak learning rate and the optimizer's injected hyperparameters; a clip_threshold
  of None (clipping off) is static, so it is not one of them. In weight_decay_mode
  "timescale" weight_decay_timescale takes weight_decay's place (the alias gets the
  decay it sets). weight_decay_mode itself is static: it picks the chain.
  """
  opt = _with_defaults(opt)
  names = HYPERPARAMS[opt.name]
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
  `default_config`, `with_learning_rate`).
  """
  validate(opt)
  opt = _with_defaults(opt)
  mask = None if opt.decay_vectors else jax.tree.map(lambda p: len(p.shape) >= 2, params)
  hp = {**hyperparams(opt), **(values or {})}
  if opt.name == "stable_adamw":
    hp.setdefault("clip_threshold", None)  # clipping off: static, so not injected
  hp["weight_decay"], mode = _weight_decay(opt, hp)
  # inject_hyperparams injects the alias's numeric arguments, HYPERPARAMS[opt.name], and
  # evaluates schedules (the learning rate, an independent decay) at each step.
  alias = optax.inject_hyperparams(
      ALIASES[opt.name], static_args=("mask", "parametrization", "weight_decay_mode"))
  tx = alias(learning_rate=schedule(opt, hp.pop("learning_rate")), mask=mask,
             parametrization=table, weight_decay_mode=mode, **hp)
  if opt.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  if opt.skip_spikes_k > 0:  # outermost: it sees the loss and the raw gradients
    tx = skip_spikes(tx, opt.skip_spikes_k, opt.skip_spikes_window, opt.skip_spikes_metric,
                     opt.skip_spikes_max_in_row)
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


def _adamw(learning_rate, b1, b2, eps, weight_decay, mask=None, *, parametrization=None,
           weight_decay_mode="coupled"):
  """AdamW: StableAdamW without clipping (RMS_t is still in the state)."""
  return stable_adamw(learning_rate, b1, b2, eps, weight_decay, None, mask,
                      parametrization=parametrization, weight_decay_mode=weight_decay_mode)


def _lion(learning_rate, b1, b2, weight_decay, mask=None, *, parametrization=None,
          weight_decay_mode="coupled"):
  return with_learning_rate(optax.scale_by_lion(b1, b2), learning_rate, weight_decay, mask,
                            parametrization=parametrization,
                            weight_decay_mode=weight_decay_mode)


def _sgd(learning_rate, momentum, weight_decay, mask=None, *, parametrization=None,
         weight_decay_mode="coupled"):
  return with_learning_rate(optax.trace(momentum), learning_rate, weight_decay, mask,
                            parametrization=parametrization,
                            weight_decay_mode=weight_decay_mode)


def _adafactor(learning_rate, weight_decay, clip_threshold=1.0, mask=None, *,
               parametrization=None, weight_decay_mode="coupled"):
  """Adafactor: factored second moments (optax's decay schedule 1 - t^-0.8), block-RMS
  update clipping (always on; 1 is its default), parameter scale."""
  direction = optax.chain(
      optax.scale_by_factored_rms(),
      optax.clip_by_block_rms(clip_threshold),
      optax.scale_by_param_block_rms())
  return with_learning_rate(direction, learning_rate, weight_decay, mask,
                            parametrization=parametrization,
                            weight_decay_mode=weight_decay_mode)


# Each optimizer's alias takes its own hyperparameters as named arguments.
ALIASES = {"adamw": _adamw, "stable_adamw": stable_adamw, "adam_atan2": adam_atan2,
           "lion": _lion, "sgd": _sgd, "adafactor": _adafactor}
