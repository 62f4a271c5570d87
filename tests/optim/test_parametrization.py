import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim

ROLE_ORDER = ("input", "hidden", "output")


def cs(parametrization, optimizer, alignment):
  e = optim.exponents(parametrization, optimizer, alignment)
  return tuple(e[r].c for r in ROLE_ORDER)


# Everett et al. 2024, as stated in the seeds README: (embedding, hidden, readout).
SEED_TABLE = {
  "sp": dict(
    a=(0, 0, 0),
    b=(0, 0.5, 0.5),
    adam=((0, 1, 1), (0, 0.5, 0.5)),
    sgd=((-0.5, 0.5, 1), (-0.5, 0, 0.5)),
  ),
  "ntk": dict(a=(0, 0.5, 0.5), b=(0, 0, 0), adam=((0, 0.5, 0.5), (0, 0, 0))),
  "mup": dict(
    a=(-0.5, 0, 0.5),
    b=(0.5, 0.5, 0.5),
    adam=((0.5, 1, 0.5), (0.5, 0.5, 0)),
    sgd=((0, 0, 0), (0, -0.5, 0)),
  ),
  "mfp": dict(a=(0, 0.5, 1), b=(0, 0, 0), adam=((0, 0.5, 0), (0, 0, -0.5))),
}


@pytest.mark.parametrize("name", sorted(SEED_TABLE))
def test_exponents_match_the_seed_table(name):
  row = SEED_TABLE[name]
  e = optim.exponents(name, "adam", "full")
  assert tuple(e[r].a for r in ROLE_ORDER) == row["a"]
  assert tuple(e[r].b for r in ROLE_ORDER) == row["b"]
  for opt in ("adam", "sgd"):
    if opt in row:
      assert cs(name, opt, "full") == row[opt][0]
      assert cs(name, opt, "none") == row[opt][1]


def test_tensor_programs_v_mup_table():
  # Tensor Programs V (arXiv:2203.03466): init var 1/fan_in, 1/fan_in, 1/fan_in^2 (input, hidden, output) -> std
  # exponents 0, 1/2, 1; Adam LR eta, eta/fan_in, eta/fan_in; SGD eta*fan_out, eta, eta/fan_in.
  e = optim.exponents("mup_tp5", "adam", "full")
  assert tuple(e[r].b for r in ROLE_ORDER) == (0, 0.5, 1)
  assert tuple(e[r].a for r in ROLE_ORDER) == (0, 0, 0)
  assert cs("mup_tp5", "adam", "full") == (0, 1, 1)
  assert cs("mup_tp5", "sgd", "full") == (-1, 0, 1)


def test_equivalence_classes_under_the_abc_symmetry():
  # a -> a + t, b -> b - t, c -> c - t (Adam), c - 2t (SGD), c (Adafactor) maps sp to ntk
  # and mup to mfp (Everett et al. Sec. 2); the derived exponents must respect it.
  for src, dst in (("sp", "ntk"), ("mup", "mfp"), ("mup", "mup_tp5")):
    for align in ("full", "none"):
      es, ed = optim.exponents(src, "adam", align), optim.exponents(dst, "adam", align)
      for r in ROLE_ORDER:
        t = ed[r].a - es[r].a
        assert ed[r].b == es[r].b - t
        assert ed[r].c == es[r].c - t
        assert (
          optim.exponents(dst, "sgd", align)[r].c == optim.exponents(src, "sgd", align)[r].c - 2 * t
        )
        assert (
          optim.exponents(dst, "adafactor", align)[r].c
          == optim.exponents(src, "adafactor", align)[r].c
        )


def mlp_params(width, d_in=12, d_out=10, as_shapes=False):
  shapes = {
    "embed": (d_in, width),
    "embed_bias": (width,),
    "hidden": (width, 4 * width),
    "hidden2": (4 * width, width),
    "norm": (width,),
    "readout": (width, d_out),
    "readout_bias": (d_out,),
    "temperature": (),
  }
  if as_shapes:
    return {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  return {k: jnp.zeros(s) for k, s in shapes.items()}


@pytest.mark.parametrize("as_shapes", [False, True])
def test_infer_roles_from_base_shapes(as_shapes):
  table = optim.parametrize(
    base=mlp_params(8, as_shapes=as_shapes), target=mlp_params(32, as_shapes=as_shapes)
  )
  got = {k: (s.role, s.width_mult) for k, s in table.items()}
  assert got == {
    "embed": ("input", 4.0),
    "embed_bias": ("input", 4.0),
    "hidden": ("hidden", 4.0),
    "hidden2": ("hidden", 4.0),
    "norm": ("input", 4.0),
    "readout": ("output", 4.0),
    "readout_bias": ("fixed", 1.0),
    "temperature": ("fixed", 1.0),
  }


@pytest.mark.parametrize("name", optim.PARAMETRIZATIONS)
@pytest.mark.parametrize("opt", ("adam", "sgd", "adafactor"))
@pytest.mark.parametrize("align", optim.ALIGNMENTS)
def test_base_width_multipliers_are_exactly_one(name, opt, align):
  base = mlp_params(16)
  table = optim.parametrize(
    base=base, target=mlp_params(16), parametrization=name, optimizer=opt, alignment=align
  )
  sp = optim.parametrize(
    base=base, target=mlp_params(16), parametrization="sp", optimizer=opt, alignment=align
  )
  leaves = lambda t: jax.tree.leaves(t, is_leaf=lambda x: isinstance(x, optim.LeafScale))
  assert len(leaves(table)) == len(leaves(sp)) == len(jax.tree.leaves(base))
  for leaf, ref in zip(leaves(table), leaves(sp)):
    assert (leaf.multiplier, leaf.lr, leaf.eps) == (1.0, 1.0, 1.0)
    assert leaf.init_std == ref.init_std  # the standard-parametrization model


def test_mup_table_at_width_ratio_four():
  t = optim.parametrize(
    base=mlp_params(16),
    target=mlp_params(64),
    parametrization="mup",
    optimizer="adam",
    alignment="full",
  )
  # Everett mup: a = (-1/2, 0, 1/2), b = 1/2, Adam c = (1/2, 1, 1/2), g = (1/2, 1, 1/2).
  assert t["embed"].multiplier == 2.0 and t["readout"].multiplier == 0.5
  assert t["hidden"].multiplier == 1.0
  assert (t["embed"].lr, t["hidden"].lr, t["readout"].lr) == (0.5, 0.25, 0.5)
  assert (t["embed"].eps, t["hidden"].eps, t["readout"].eps) == (0.5, 0.25, 0.5)
  assert t["hidden"].init_std == pytest.approx(16**-0.5 * 0.5)  # 1/sqrt(fan_in) at m = 4
  assert t["readout_bias"].lr == 1.0 and t["temperature"].multiplier == 1.0
  g = optim.parametrize(
    base=mlp_params(16),
    target=mlp_params(64),
    parametrization="sp",
    per_layer_lr=False,
    scale_eps=False,
  )
  assert {leaf.lr for leaf in jax.tree.leaves(g, is_leaf=_is_scale)} == {1.0}
  c = optim.parametrize(
    base=mlp_params(16),
    target=mlp_params(64),
    parametrization="mup",
    constants={"output": {"multiplier": 3.0, "lr": 2.0}},
  )
  assert c["readout"].multiplier == 1.5 and c["readout"].lr == 1.0
  with pytest.raises(ValueError, match="constants"):
    optim.parametrize(
      base=None, target=mlp_params(8), parametrization="mup", constants={"readout": {"lr": 2.0}}
    )


def test_scale_by_parametrization_composes_after_adam():
  base, params = mlp_params(8), mlp_params(32)
  params = jax.tree.map(lambda p: p + 1.0, params)
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.3), params)
  table = optim.parametrize(base=base, target=params, parametrization="mup")
  tx = optax.chain(
    optax.scale_by_adam(), optim.scale_by_parametrization(table), optax.scale_by_learning_rate(0.1)
  )
  plain = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(0.1))
  u, _ = tx.update(grads, tx.init(params), params)
  v, _ = plain.update(grads, plain.init(params), params)
  mults = optim.lr_multipliers(table)
  jax.tree.map(lambda a, b, m: np.testing.assert_allclose(a, b * m, rtol=1e-6), u, v, mults)
  assert mults["hidden"] == 0.25  # m = 4, Adam c = 1


def _mlp_grad_rms(parametrization, width, base_width=64, seed=0):
  """Gradient RMS per role of a 3-layer MLP built from the table, at init."""
  d_in, d_out = 16, 10
  shapes = lambda n: {
    "w1": jnp.zeros((d_in, n)),
    "w2": jnp.zeros((n, n)),
    "w3": jnp.zeros((n, d_out)),
  }
  table = optim.parametrize(
    base=shapes(base_width), target=shapes(width), parametrization=parametrization
  )
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  params = {
    k: table[k].init_std * jax.random.normal(kk, s.shape)
    for (k, s), kk in zip(shapes(width).items(), keys[:3])
  }
  mult = optim.forward_multipliers(table)
  x = jax.random.normal(keys[3], (256, d_in))
  # A linear loss: d loss / d logits is a fixed random Theta(1) matrix, so the
  # measured scale is the parametrization's, not that of a near-uniform softmax.
  r = jax.random.normal(jax.random.PRNGKey(seed + 1), (256, d_out))

  def loss(p):
    h = jax.nn.relu(mult["w1"] * x @ p["w1"])
    h = jax.nn.relu(mult["w2"] * h @ p["w2"])
    logits = mult["w3"] * h @ p["w3"]
    return jnp.mean(logits * r)

  g = jax.grad(loss)(params)
  return {k: float(jnp.sqrt(jnp.mean(v**2))) for k, v in g.items()}, table


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp"])
def test_eps_multiplier_follows_the_measured_gradient_scale(name):
  # Adam's eps must scale like the gradient; measure gradient RMS across widths at
  # init and compare the fitted exponent with the table's eps exponent.
  widths = [64, 256, 1024]
  rms = {w: _mlp_grad_rms(name, w)[0] for w in widths}
  table = _mlp_grad_rms(name, widths[-1])[1]
  for k in ("w1", "w2", "w3"):
    slope = np.polyfit(np.log(widths), np.log([rms[w][k] for w in widths]), 1)[0]
    predicted = np.log(table[k].eps) / np.log(widths[-1] / 64)
    assert abs(slope - predicted) < 0.1, (k, slope, predicted)


def _is_scale(x):
  return isinstance(x, optim.LeafScale)
