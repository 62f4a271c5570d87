"""Weight-decay modes: each against a NumPy reference written from its definition."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from adamlab import optim
from adamlab.errors import ConfigError
from adamlab.train import optimizer
from tests.optim import reference

BASE, WIDTH = 8, 32  # m = 4
STEPS = 5
MODES = ("coupled", "independent", "width_scaled", "timescale")


def shapes(n):
  # embed: input, hidden: hidden, readout: output, bias: a vector of the input role.
  return {"embed": (6, n), "hidden": (n, n), "readout": (n, 5), "bias": (n,)}


def init(n, seed=0):
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes(n).items()}


def gradients(seed=1):
  rng = np.random.default_rng(seed)
  return [
    {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes(WIDTH).items()}
    for _ in range(STEPS)
  ]


def section(mode, **fields):
  opt = ml_collections.ConfigDict(
    dict(
      name="adamw",
      learning_rate=0.02,
      b1=0.9,
      b2=0.95,
      eps=1e-6,
      weight_decay=0.3,
      schedule="warmup_cosine",
      warmup_steps=2,
      total_steps=6,
      final_lr_ratio=0.1,
      grad_clip_norm=0.0,
      weight_decay_mode=mode,
    )
  )
  if mode == "timescale":
    opt.weight_decay, opt.weight_decay_timescale = 0.0, 0.5
  opt.update(fields)
  return opt


def table():
  return optim.parametrize(
    base=init(BASE), target=init(WIDTH), parametrization="mup", optimizer="adam"
  )


def train(opt, p, values=None):
  tx = optimizer.build(opt, table(), p, values)
  state = tx.init(p)
  for g in gradients():
    u, state = tx.update(g, state, p)
    p = optax.apply_updates(p, u)
  return p


def warmup_cosine(t, peak, warmup, total, final):
  if t < warmup:
    return peak * t / warmup
  return peak * (final + (1 - final) * 0.5 * (1 + np.cos(np.pi * (t - warmup) / (total - warmup))))


# Everett et al.'s muP for Adam at m = 4: lr multipliers k = m^-c, c = (1/2, 1, 1/2).
LR_MULT = {"embed": 0.5, "hidden": 0.25, "readout": 0.5, "bias": 0.5}
EPS_MULT = {"embed": 0.5, "hidden": 0.25, "readout": 0.5, "bias": 0.5}
# width_scaled: lambda times the width multiplier m^c that makes k * lambda width-free.
WIDTH_MULT = {"embed": 2.0, "hidden": 4.0, "readout": 2.0, "bias": 2.0}


def decay(mode, lr_t, opt, k, s):
  """The fraction of theta a decayed leaf loses at a step, from each mode's definition."""
  peak, lam = opt.learning_rate, opt.weight_decay
  if mode == "coupled":
    return lr_t * k * lam
  if mode == "width_scaled":
    return lr_t * k * (lam * s)
  if mode == "independent":
    return lr_t / peak * lam
  # Wang and Aitchison: the weights are an EMA of timescale 1 / (eta lambda) iterations,
  # eta this leaf's peak lr; asking for tau * total_steps gives lambda.
  lam = 1 / (opt.weight_decay_timescale * peak * k * opt.total_steps)
  return lr_t * k * lam


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decay_vectors", [False, True])
def test_mode_matches_numpy_reference(mode, decay_vectors):
  opt = section(mode, decay_vectors=decay_vectors)
  ours = train(opt, init(WIDTH))
  lrs = [warmup_cosine(t, opt.learning_rate, 2, 6, 0.1) for t in range(STEPS)]
  for name, theta0 in init(WIDTH).items():
    decayed = decay_vectors or name != "bias"
    k, s = LR_MULT[name], WIDTH_MULT[name]
    decays = [decay(mode, lr, opt, k, s) if decayed else 0.0 for lr in lrs]
    want = reference.adamw(
      [g[name] for g in gradients()],
      theta0,
      [lr * k for lr in lrs],
      decays,
      0.9,
      0.95,
      1e-6 * EPS_MULT[name],
    )[-1]
    np.testing.assert_allclose(ours[name], want, rtol=2e-5, atol=1e-6, err_msg=name)


def test_table_multipliers_of_the_reference():
  t = table()
  assert {k: v.lr for k, v in t.items()} == LR_MULT
  assert {k: v.eps for k, v in t.items()} == EPS_MULT
  assert {k: v.decay_width_mult for k, v in t.items()} == WIDTH_MULT


@pytest.mark.parametrize("mode", MODES)
def test_packed_runs_equal_separate_builds(mode):
  # As packed runs do: one program, jax.vmap over the injected scalars (traced values).
  field = "weight_decay_timescale" if mode == "timescale" else "weight_decay"
  pair, lrs = (0.25, 2.0) if mode == "timescale" else (0.1, 0.4), (0.02, 0.01)
  opt = section(mode)
  assert field in optimizer.hyperparams(opt)
  values = {k: jnp.asarray([v, v]) for k, v in optimizer.hyperparams(opt).items()}
  values.update({field: jnp.asarray(pair), "learning_rate": jnp.asarray(lrs)})
  packed = jax.jit(jax.vmap(lambda hp: train(opt, init(WIDTH), hp)))(values)
  for i in range(2):
    alone = train(section(mode, **{field: pair[i], "learning_rate": lrs[i]}), init(WIDTH))
    for name in alone:
      np.testing.assert_allclose(packed[name][i], alone[name], rtol=1e-5, atol=1e-7)


def test_coupled_is_the_default_and_todays_chain_bit_for_bit():
  opt = section("coupled")
  del opt["weight_decay_mode"]
  assert optimizer.default_config().weight_decay_mode == "coupled"
  p = init(WIDTH)
  jax.tree.map(np.testing.assert_array_equal, train(opt, p), train(section("coupled"), p))
  # The chain before weight_decay_mode existed: decay added to the direction.
  t, g = table(), gradients()[0]
  before = optax.chain(
    optim.scale_by_stable_adam(
      0.9, 0.95, 1e-6, clip_threshold=None, eps_scale=optim.eps_multipliers(t)
    ),
    optax.add_decayed_weights(0.3, jax.tree.map(lambda x: x.ndim >= 2, p)),
    optim.scale_by_parametrization(t),
    optax.scale_by_learning_rate(0.01),
  )
  now = optim.stable_adamw(
    0.01,
    0.9,
    0.95,
    1e-6,
    weight_decay=0.3,
    clip_threshold=None,
    mask=jax.tree.map(lambda x: x.ndim >= 2, p),
    parametrization=t,
  )
  u_before, _ = before.update(g, before.init(p), p)
  u_now, _ = now.update(g, now.init(p), p)
  jax.tree.map(np.testing.assert_array_equal, u_now, u_before)


@pytest.mark.parametrize("parametrization", optim.PARAMETRIZATIONS)
@pytest.mark.parametrize("family", ["adam", "sgd", "adafactor"])
@pytest.mark.parametrize("alignment", optim.ALIGNMENTS)
def test_width_scaled_keeps_lr_times_decay_width_free(parametrization, family, alignment):
  t = optim.parametrize(
    base=init(BASE),
    target=init(WIDTH),
    parametrization=parametrization,
    optimizer=family,
    alignment=alignment,
  )
  leaves = jax.tree.leaves(t, is_leaf=lambda x: isinstance(x, optim.LeafScale))
  assert len(leaves) == len(jax.tree.leaves(init(WIDTH)))
  for leaf in leaves:
    assert leaf.lr * leaf.decay_width_mult == pytest.approx(1.0)
  sgd = optim.parametrize(
    base=init(BASE), target=init(WIDTH), parametrization="mup_tp5", optimizer="sgd"
  )
  # Tensor Programs V's SGD table: lr m, 1, 1/m (input, hidden, output), decay the inverse.
  assert {k: v.decay_width_mult for k, v in sgd.items()} == {
    "embed": 0.25,
    "hidden": 1.0,
    "readout": 4.0,
    "bias": 0.25,
  }
  flat = optim.parametrize(
    base=init(BASE), target=init(WIDTH), parametrization="mup", per_layer_lr=False
  )
  is_scale = lambda x: isinstance(x, optim.LeafScale)
  assert {v.decay_width_mult for v in jax.tree.leaves(flat, is_leaf=is_scale)} == {1.0}


def test_independent_decay_at_the_alias_level():
  # After the learning rate: theta -= lr * k * direction + weight_decay * theta.
  p, g, t = init(WIDTH), gradients()[0], table()
  tx = optim.with_learning_rate(
    optax.identity(), 0.1, 0.05, parametrization=t, weight_decay_mode="independent"
  )
  u, _ = tx.update(g, tx.init(p), p)
  for name in p:
    np.testing.assert_allclose(u[name], -0.1 * LR_MULT[name] * g[name] - 0.05 * p[name], rtol=1e-6)


def test_width_scaled_decay_takes_a_schedule():
  # theta -= lr * k * (direction + lambda_t * m^c * theta), and k * m^c = 1 here:
  # u_t = -lr * (k * g + lambda_t * theta), lambda_t read at step t = 0, 1, 2.
  p, g, t = init(WIDTH), gradients()[0], table()
  schedule = lambda n: 0.05 * (n + 1)
  tx = optim.with_learning_rate(
    optax.identity(), 0.1, schedule, parametrization=t, weight_decay_mode="width_scaled"
  )
  state = tx.init(p)
  for step in range(3):
    u, state = tx.update(g, state, p)
    for name in p:
      want = -0.1 * (LR_MULT[name] * g[name] + 0.05 * (step + 1) * p[name])
      np.testing.assert_allclose(u[name], want, rtol=1e-5, atol=1e-7)


BAD = [
  (
    dict(weight_decay_mode="decoupled"),
    "optimizer.weight_decay_mode",
    "'coupled', 'independent', 'width_scaled', 'timescale'",
  ),
  (dict(weight_decay_mode="timescale"), "optimizer.weight_decay_timescale", ">= 1 / "),
  (
    dict(weight_decay_mode="timescale", weight_decay_timescale=1e-4, total_steps=1000),
    "optimizer.weight_decay_timescale",
    ">= 1 / optimizer.total_steps",
  ),
  (
    dict(weight_decay_mode="timescale", weight_decay_timescale=0.2, weight_decay=0.1),
    "optimizer.weight_decay",
    "0 when",
  ),
  (dict(weight_decay_timescale=0.2), "optimizer.weight_decay_timescale", "0 unless"),
  (
    dict(weight_decay_mode="timescale", weight_decay_timescale=-1.0),
    "optimizer.weight_decay_timescale",
    ">= 0",
  ),
]


@pytest.mark.parametrize("fields,name,allowed", BAD)
def test_bad_decay_fields_name_the_field(fields, name, allowed):
  opt = optimizer.default_config()
  opt.update(fields)
  with pytest.raises(ConfigError) as err:
    optimizer.build(opt, None, init(8))
  assert str(err.value).startswith(name + " = ") and allowed in str(err.value)


@pytest.mark.parametrize("mode", MODES)
def test_injected_state_and_hyperparams(mode):
  # The alias always injects weight_decay (in independent and timescale modes, this
  # step's decay); hyperparams(opt) names the config field packed runs may differ in.
  opt = section(mode)
  tx = optimizer.build(opt, table(), init(WIDTH))
  state = tx.init(init(WIDTH))
  injected = optax.tree_utils.tree_get(state, "InjectStatefulHyperparamsState").hyperparams
  assert set(injected) == {"learning_rate", *optimizer.OPTIMIZERS["adamw"].hyperparams}
  field = "weight_decay_timescale" if mode == "timescale" else "weight_decay"
  assert set(optimizer.hyperparams(opt)) == {"learning_rate", "b1", "b2", "eps", field}
  for _ in range(3):
    _, state = tx.update(gradients()[0], state, init(WIDTH))
  wd = float(
    optax.tree_utils.tree_get(state, "InjectStatefulHyperparamsState").hyperparams["weight_decay"]
  )
  unit = warmup_cosine(2, 1.0, 2, 6, 0.1)  # the last update's lr_t / lr_peak
  want = {
    "coupled": 0.3,
    "width_scaled": 0.3,
    "independent": 0.3 * unit,
    "timescale": unit / (0.5 * 6),
  }[mode]
  assert wd == pytest.approx(want, rel=1e-6)


def test_independent_decay_of_zero_packs_with_nonzero():
  # Packed runs vmap one optimizer over their hyperparameters: lambda = 0 and lambda > 0
  # must give states of one structure.
  params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  opt = ml_collections.ConfigDict(
    dict(name="adamw", weight_decay_mode="independent", warmup_steps=0, total_steps=10)
  )
  structures = [
    jax.tree.structure(optimizer.build(opt, None, params, {"weight_decay": lam}).init(params))
    for lam in (0.0, 0.1)
  ]
  assert structures[0] == structures[1]
