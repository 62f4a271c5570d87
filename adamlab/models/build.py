"""Build a model from an experiment config, with its parametrization table applied.

The model is traced at config.model.base_width and at config.model.width
(`nnx.eval_shape`, no memory); comparing the two gives every parameter its role
(`adamlab.optim.parametrize`). The same table sets the init stds and forward
multipliers here and the learning-rate and eps multipliers of the optimizer
(`adamlab.train.optimizer.build(config.optimizer, table, params)`). The optimizer's
parametrization family ("adam", "sgd", "adafactor") is the caller's to give: the
trainer's optimizer registry knows it (`adamlab.train.optimizer.build_model`).
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from adamlab import optim
from adamlab.models.attention import REMAT, check_heads, depth_rule
from adamlab.models.gpt import GPT
from adamlab.models.mlp import MLP
from adamlab.models.vit import ViT
from adamlab.errors import ConfigError, check_one_of

MODELS = {"gpt": GPT, "vit": ViT, "mlp": MLP}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_config(name: str) -> ml_collections.ConfigDict:
  """The `model` section for `name`, every field explained."""
  common = dict(
    name=name,  # gpt, vit or mlp
    width=128,  # d_model (hidden width of the MLP)
    base_width=128,  # the width whose model every parametrization equals (SP)
    dtype="float32",  # compute dtype (parameters stay float32): float32 or bfloat16
    zero_init_readout=False,  # muP option: readout starts at zero
    dropout=0.0,  # dropout rate in training (residual branches; MLP hidden layers)
  )
  if name == "mlp":
    return ml_collections.ConfigDict(
      dict(
        common,
        input_dim=28 * 28,  # flattened input size
        num_classes=10,
        use_bias=False,
      )
    )
  blocks = dict(
    depth=2,  # transformer blocks
    num_heads=4,  # attention heads; must divide width and base_width
    head_dim=ml_collections.config_dict.placeholder(int),  # set: fixed head size, heads grow
    mlp="gelu",  # gelu (4x) or swiglu
    mlp_ratio=4,  # MLP hidden size / width
    qk_layernorm=False,  # LayerNorm on queries and keys
    zero_init_query=False,  # muP option: query projection starts at zero
    # What each block keeps for the backward pass: none (all), block (its input only,
    # the rest recomputed) or no_attention (all but the T x T attention probabilities)
    remat="none",
    scan_layers=False,  # run the blocks as one lax.scan: compiles one block, not depth
    # Depth transfer: residual branches times (depth / base_depth)^-alpha, block lr and
    # eps to match (optim.parametrize). alpha 0: off, standard practice (alpha > 0
    # needs base_depth); 1/2: Depth-muP (Tensor Programs VI); 1: CompleteP (Dey et al. 2025)
    base_depth=ml_collections.config_dict.placeholder(int),
    alpha=0.0,
  )
  if name == "gpt":
    return ml_collections.ConfigDict(
      dict(
        common,
        **blocks,
        vocab_size=256,  # byte-level tokens
        seq_len=128,  # context length
        positions="learned",  # learned or rotary
        z_loss=0.0,  # weight of logsumexp^2 in the loss (PaLM)
        tied_embeddings=False,  # readout = embedding^T (times the output role's multiplier)
      )
    )
  return ml_collections.ConfigDict(
    dict(
      common,
      **blocks,
      image_size=28,
      channels=1,
      patch_size=4,
      num_classes=10,
      pool="cls",  # cls token or gap (global average pooling)
    )
  )


def validate(config) -> None:
  """ConfigError naming the first bad field of config.model."""
  cfg = config.model
  if cfg.get("name") not in MODELS:
    raise ConfigError("model.name", cfg.get("name"), tuple(MODELS))
  known = default_config(cfg.name)
  for key in cfg:
    if key not in known:
      raise ConfigError(f"model.{key}", cfg[key], "a known field: " + ", ".join(known))
  for key, default in known.items():  # every size is a positive integer
    if isinstance(default, int) and not isinstance(default, bool):
      if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
        raise ConfigError(f"model.{key}", cfg[key], "an integer >= 1")
  if cfg.get("z_loss", 0.0) < 0:
    raise ConfigError("model.z_loss", cfg.z_loss, ">= 0")
  if not 0 <= cfg.dropout < 1:
    raise ConfigError("model.dropout", cfg.dropout, "in [0, 1)")
  if cfg.dtype not in DTYPES:
    raise ConfigError("model.dtype", cfg.dtype, tuple(DTYPES))
  if cfg.name != "mlp":
    check_heads(cfg)
    if cfg.mlp not in ("gelu", "swiglu"):
      raise ConfigError("model.mlp", cfg.mlp, ("gelu", "swiglu"))
    check_one_of("model.remat", cfg.remat, REMAT)
    _check_depth(cfg)
    if not isinstance(cfg.scan_layers, bool):
      raise ConfigError("model.scan_layers", cfg.scan_layers, "True or False")
  if cfg.name == "gpt" and cfg.positions not in ("learned", "rotary"):
    raise ConfigError("model.positions", cfg.positions, ("learned", "rotary"))
  if cfg.name == "vit":
    if cfg.image_size % cfg.patch_size:
      raise ConfigError(
        "model.patch_size", cfg.patch_size, f"a divisor of model.image_size ({cfg.image_size})"
      )
    if cfg.pool not in ("cls", "gap"):
      raise ConfigError("model.pool", cfg.pool, ("cls", "gap"))
  # The model and the optimizer share these two (through the table).
  check_one_of("parametrization", config.get("parametrization", "sp"), optim.PARAMETRIZATIONS)
  check_one_of("alignment", config.get("alignment", "full"), optim.ALIGNMENTS)


def _check_depth(cfg) -> None:
  if cfg.base_depth is not None and (not isinstance(cfg.base_depth, int) or cfg.base_depth < 1):
    raise ConfigError("model.base_depth", cfg.base_depth, "None or an integer >= 1")
  if not (
    isinstance(cfg.alpha, (int, float)) and not isinstance(cfg.alpha, bool) and 0 <= cfg.alpha <= 1
  ):
    raise ConfigError(
      "model.alpha", cfg.alpha, "a number in [0, 1] (0 off, 1/2 Depth-muP, 1 CompleteP)"
    )
  if cfg.alpha and cfg.base_depth is None:  # (else alpha would silently do nothing)
    raise ConfigError(
      "model.base_depth",
      None,
      "an integer >= 1 when model.alpha > 0: the depth the model scales from",
    )


def _construct(config, width: int):
  cfg = ml_collections.ConfigDict(config.model.to_dict())
  cfg.width = width
  return MODELS[cfg.name](cfg, config.get("parametrization", "sp"), DTYPES[cfg.dtype])


def param_shapes(config, width: int):
  """Parameter shapes of the model at `width`, as a nested dict of ShapeDtypeStructs."""
  abstract = nnx.eval_shape(lambda: _construct(config, width))
  return nnx.to_pure_dict(nnx.state(abstract, nnx.Param))


def table(config, family: str):
  """The per-leaf parametrization table of this config's model for an optimizer of
  `family` ("adam", "sgd", "adafactor", "muon" or "muon_rms"), in width and, with
  model.base_depth and model.alpha set, in depth. config.optimizer's per_layer_lr and
  scale_eps (default True) are `optim.parametrize`'s arguments. The model at twice
  the base width is the `delta` that tells the width axes, so the roles are known at
  the base width too (Muon needs them there). A width below model.base_width is
  ordinary muTransfer (tuning narrower than the reference): the config names its base
  width, so a narrower target is meant, not base and target swapped."""
  opt = config.get("optimizer", {})
  return optim.parametrize(
    base=param_shapes(config, config.model.base_width),
    target=param_shapes(config, config.model.width),
    delta=param_shapes(config, 2 * config.model.base_width),
    allow_narrower=True,
    parametrization=config.get("parametrization", "sp"),
    optimizer=family,
    alignment=config.get("alignment", "full"),
    per_layer_lr=opt.get("per_layer_lr", True),
    scale_eps=opt.get("scale_eps", True),
    **depth_rule(config.model),
  )  # (both shape trees hold the target's blocks)


def build(config, key: jax.Array, family: str):
  """(model, table): the model of config.model, initialized from the table of an
  optimizer of `family` (see `table`)."""
  validate(config)
  t = table(config, family)
  return _initialized(config, t, key), t


def _initialized(config, t, key: jax.Array):
  """The model of config.model at its width, its params set from the table `t`."""
  model = _construct(config, config.model.width)
  apply_table(model, t, key, zero_init_query=config.model.get("zero_init_query", False))
  return model


def apply_table(model, t, key, zero_init_query: bool = False):
  """Set every parameter's value and forward multiplier from the table, in place.

  normal: init_std * N(0, 1); zeros: 0; ones: 1 / multiplier, so the effective
  value (multiplier * stored) starts at 1 in every parametrization. A tied embedding
  also gets its readout multiplier (the output role's) for its use as the readout.
  """
  params = [(path, var) for path, var in nnx.iter_graph(model) if isinstance(var, nnx.Param)]
  for i, (path, var) in enumerate(params):
    entry = t
    for k in path:
      entry = entry[k]
    init = var.get_metadata("init")
    shape = var[...].shape
    if init == "normal":
      new = entry.init_std * jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)
    elif init == "ones":
      new = jnp.full(shape, 1.0 / entry.multiplier, jnp.float32)
    else:
      new = jnp.zeros(shape, jnp.float32)
    if zero_init_query and path[-2:] == ("qkv", "kernel"):
      new = new.at[:, : shape[1] // 3].set(0.0)
    var[...] = new
    var.set_metadata(multiplier=entry.multiplier)
    if "tied_output" in var.get_metadata():
      var.set_metadata(tied_output=entry.readout_multiplier)


def functional(model):
  """(apply, params): params is a plain nested dict of arrays (what Optax sees), and
  apply(params, *args) calls the model with them; pure, so jit and grad work. apply
  holds the graph definition and an abstract skeleton of the state, not its values."""
  return _apply_of(model), nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _apply_of(model):
  """A pure apply(params, *args) over the model's graph; it keeps only the shapes of
  the model's state (every variable is a Param, replaced by the params passed)."""
  graphdef, state = nnx.split(model)
  skeleton = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)

  def apply(p, *args, **kwargs):
    st = jax.tree.map(lambda v: v, skeleton)
    nnx.replace_by_pure_dict(st, p)
    return nnx.merge(graphdef, st)(*args, **kwargs)

  return apply


def build_params(config, key: jax.Array, family: str, shardings=None):
  """(apply, params, table): the model of config.model as a pure function, and its
  params initialized from the table inside one jit, as `build` initializes them.

  shardings: None, or a function of the abstract model giving a tree of shardings like
  the params; each parameter is then made where it lives, so no full-size copy of it
  ever exists on one device. apply keeps no initial values (see `functional`)."""
  apply, init, t = param_init(config, key, family, shardings)
  return apply, init(key), t


def param_init(config, key: jax.Array, family: str, shardings=None):
  """(apply, init, table) of `build_params`: init(key) is the jitted initializer (its
  compiled memory analysis is the setup's peak per device)."""
  validate(config)
  t = table(config, family)
  make = lambda k: _initialized(config, t, k)
  abstract = nnx.eval_shape(make, key)
  out = None if shardings is None else shardings(abstract)
  init = jax.jit(lambda k: nnx.to_pure_dict(nnx.state(make(k), nnx.Param)), out_shardings=out)
  return _apply_of(abstract), init, t
