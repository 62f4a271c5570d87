"""Depth exponents in the parametrization table: closed forms, the base depth, a measurement."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim

ALPHAS = (0.0, 0.5, 1.0)


def transformer(width, depth, vocab=11):
  """Shapes of a pre-LN transformer's params, blocks under "blocks" as the models have."""
  block = lambda: {
    "attn": {"qkv": jnp.zeros((width, 3 * width)), "out": jnp.zeros((width, width))},
    "mlp": {"up": jnp.zeros((width, 4 * width)), "down": jnp.zeros((4 * width, width))},
    "norm": {"scale": jnp.zeros((width,)), "bias": jnp.zeros((width,))},
  }
  return {
    "embed": jnp.zeros((vocab, width)),
    "blocks": [block() for _ in range(depth)],
    "final_norm": jnp.zeros((width,)),
    "readout": jnp.zeros((width, vocab)),
  }


def deep_table(parametrization="mup", optimizer="adam", alpha=1.0, **kw):
  # m_d = 64 / 16 = 4, m_L = 8 / 2 = 4; both trees hold the target's 8 blocks.
  return optim.parametrize(
    base=transformer(16, 8),
    target=transformer(64, 8),
    parametrization=parametrization,
    optimizer=optimizer,
    depth=8,
    base_depth=2,
    alpha=alpha,
    **kw,
  )


def test_alpha_zero_is_off():
  # Standard practice in depth: no branch multiplier and no depth factor anywhere.
  assert optim.depth_exponents(0.0, "adam") == (0.0, 0.0, 0.0)
  assert optim.branch_multiplier(8, 2, 0.0) == 1.0
  for family in ("adam", "sgd", "adafactor"):
    plain = optim.parametrize(
      base=transformer(16, 8), target=transformer(64, 8), parametrization="mup", optimizer=family
    )
    assert deep_table(optimizer=family, alpha=0.0) == plain


@pytest.mark.parametrize("alpha", ALPHAS[1:])
def test_depth_exponents_closed_forms(alpha):
  assert optim.depth_exponents(alpha, "adam") == (alpha, 1 - alpha, alpha)  # lr m_L^(alpha-1)
  assert optim.depth_exponents(alpha, "sgd").c == 1 - 2 * alpha  # lr m_L^(2 alpha - 1)
  assert optim.depth_exponents(alpha, "adafactor").c == 1 - alpha
  assert optim.branch_multiplier(8, 2, alpha) == 4.0**-alpha
  # Depth-muP (Tensor Programs VI): Adam lr / sqrt(L), SGD lr constant; CompleteP: Adam lr 1.
  assert optim.depth_exponents(0.5, "adam").c == 0.5 and optim.depth_exponents(0.5, "sgd").c == 0
  assert optim.depth_exponents(1.0, "adam").c == 0


@pytest.mark.parametrize("alpha", ALPHAS[1:])
def test_table_closed_forms(alpha):
  m_d, m_l = 4.0, 4.0
  for name in ("mup", "mup_tp5"):
    t = deep_table(name, alpha=alpha)
    width_only = optim.parametrize(
      base=transformer(16, 8), target=transformer(64, 8), parametrization=name
    )
    hidden_lr = width_only["blocks"][0]["mlp"]["up"].lr
    assert hidden_lr == pytest.approx(1 / m_d)  # both muP tables: hidden Adam lr 1/m_d
    for block, plain in zip(t["blocks"], width_only["blocks"]):
      for part, leaf in (("attn", "qkv"), ("attn", "out"), ("mlp", "up"), ("mlp", "down")):
        w, p = block[part][leaf], plain[part][leaf]
        assert w.lr == pytest.approx(m_d**-1 * m_l ** (alpha - 1))
        assert w.eps == pytest.approx(1 / (m_d * m_l**alpha))
        assert w.branch_multiplier == m_l**-alpha
        assert (w.multiplier, w.init_std) == (p.multiplier, p.init_std)  # no depth in init
      for g, p in (
        (block["norm"]["scale"], plain["norm"]["scale"]),
        (block["norm"]["bias"], plain["norm"]["bias"]),
      ):
        assert g.lr == pytest.approx(p.lr * m_l ** (alpha - 1))
        assert g.eps == pytest.approx(p.eps / m_l**alpha)
    # CompleteP's LayerNorm gains and biases: lr m_L^(alpha - 1) (mup_tp5 has no width
    # exponent there); embedding, final norm and readout see no depth.
    if name == "mup_tp5":
      assert t["blocks"][3]["norm"]["scale"].lr == pytest.approx(m_l ** (alpha - 1))
    for k in ("embed", "final_norm", "readout"):
      assert t[k] == width_only[k]


@pytest.mark.parametrize("alpha", ALPHAS[1:])
def test_sgd_and_adafactor_depth(alpha):
  m_l = 4.0
  for family, c in (("sgd", 1 - 2 * alpha), ("adafactor", 1 - alpha)):
    t = deep_table(optimizer=family, alpha=alpha)
    plain = optim.parametrize(
      base=transformer(16, 8), target=transformer(64, 8), parametrization="mup", optimizer=family
    )
    up, plain_up = t["blocks"][5]["mlp"]["up"], plain["blocks"][5]["mlp"]["up"]
    assert up.lr == pytest.approx(plain_up.lr * m_l**-c)
    assert up.eps == 1.0  # eps is Adam's
    assert up.branch_multiplier == m_l**-alpha


@pytest.mark.parametrize("name", optim.PARAMETRIZATIONS)
@pytest.mark.parametrize("family", ["adam", "sgd", "adafactor"])
@pytest.mark.parametrize("alignment", optim.ALIGNMENTS)
def test_base_depth_is_todays_table_bit_for_bit(name, family, alignment):
  base, target = transformer(16, 3), transformer(64, 3)
  kw = dict(constants={"output": {"lr": 2.0}, "hidden": {"eps": 0.5}})
  today = optim.parametrize(
    base=base, target=target, parametrization=name, optimizer=family, alignment=alignment, **kw
  )
  for alpha in ALPHAS:
    deep = optim.parametrize(
      base=base,
      target=target,
      parametrization=name,
      optimizer=family,
      alignment=alignment,
      depth=3,
      base_depth=3,
      alpha=alpha,
      **kw,
    )
    assert deep == today
  flat = dict(per_layer_lr=False, scale_eps=False)
  assert optim.parametrize(
    base=base,
    target=target,
    parametrization=name,
    optimizer=family,
    alignment=alignment,
    depth=6,
    base_depth=6,
    alpha=0.5,
    **flat,
  ) == optim.parametrize(
    base=base, target=target, parametrization=name, optimizer=family, alignment=alignment, **flat
  )


def test_predicate_and_errors():
  layers = {"layers": [{"w": jnp.zeros((16, 16))}] * 4, "head": jnp.zeros((16, 3))}
  t = optim.parametrize(
    base=None,
    target=layers,
    depth=4,
    base_depth=1,
    alpha=0.5,
    in_block=lambda path: path[0] == "layers",
  )
  assert t["layers"][2]["w"].branch_multiplier == 0.5 and t["layers"][2]["w"].lr == 0.5
  assert t["head"].branch_multiplier == 1.0
  with pytest.raises(ValueError, match="^in_block = .*matched no leaf"):
    optim.parametrize(base=None, target=layers, depth=4, base_depth=1, alpha=0.5)
  optim.parametrize(base=None, target=layers, depth=4, base_depth=4, alpha=0.5)  # nothing to scale
  for kw, field in (
    (dict(depth=4, base_depth=2, alpha=1.5), "alpha"),
    (dict(depth=4, base_depth=2), "alpha"),
    (dict(depth=4, alpha=1.0), "base_depth"),
    (dict(depth=0, base_depth=2, alpha=1.0), "depth"),
  ):
    with pytest.raises(ValueError, match=f"^{field} = "):
      optim.parametrize(base=None, target=layers, in_block=lambda path: True, **kw)


def test_depth_and_width_from_shapes_without_flax():
  code = """
import sys
import jax, jax.numpy as jnp
from adamlab import optim

def shapes(width, depth):
  s = lambda *d: jax.ShapeDtypeStruct(d, jnp.float32)
  return {"embed": s(10, width), "readout": s(width, 10),
          "blocks": [{"w1": s(width, 4 * width), "w2": s(4 * width, width), "ln": s(width)}
                     for _ in range(depth)]}

table = optim.parametrize(base=shapes(32, 12), target=shapes(128, 12), parametrization="mup", depth=12, base_depth=3,
                          alpha=1.0)
assert table["blocks"][0]["w1"].lr == 0.25 and table["blocks"][0]["w1"].eps == 1 / 16
assert table["blocks"][0]["ln"].branch_multiplier == 0.25 == optim.branch_multiplier(12, 3, 1.0)
params = jax.tree.map(lambda s: jnp.ones(s.shape), shapes(128, 12))
tx = optim.stable_adamw(1e-3, parametrization=table)
tx.update(params, tx.init(params), params)
assert "flax" not in sys.modules, "flax imported"
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr


def _loss_drop(depth, alpha, family, use_table, lr, base_depth=2, width=128, seed=0):
  """Loss decrease from one step of the block leaves of a residual MLP (Adam's first step
  is sign(g); SGD's is g), the branches multiplied by m_L^-alpha; and block grad RMS."""
  shapes = {
    "w_in": jnp.zeros((16, width)),
    "w_out": jnp.zeros((width, 8)),
    "blocks": [
      {"w1": jnp.zeros((width, width)), "w2": jnp.zeros((width, width))} for _ in range(depth)
    ],
  }
  t = optim.parametrize(
    base=None,
    target=shapes,
    parametrization="mup",
    optimizer=family,
    depth=depth,
    base_depth=base_depth,
    alpha=alpha,
  )
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 2 * depth + 2))
  is_scale = lambda x: isinstance(x, optim.LeafScale)
  params = jax.tree.map(
    lambda s, x: s.init_std * jax.random.normal(next(keys), x.shape), t, shapes, is_leaf=is_scale
  )
  x = jax.random.normal(jax.random.PRNGKey(seed + 1), (64, 16))
  r = jax.random.normal(jax.random.PRNGKey(seed + 2), (64, 8))  # a fixed Theta(1) dL/dlogits
  bm = optim.branch_multiplier(depth, base_depth, alpha)

  def loss(p):
    h = x @ p["w_in"]
    for b in p["blocks"]:
      h = h + bm * (jax.nn.relu(h @ b["w1"]) @ b["w2"])
    return jnp.mean(h @ p["w_out"] / width * r)

  g = jax.grad(loss)(params)
  k = optim.lr_multipliers(t)
  step = jnp.sign if family == "adam" else (lambda v: v)
  moved = dict(
    params,
    blocks=[
      jax.tree.map(lambda w, gw, kw: w - lr * (kw if use_table else 1.0) * step(gw), b, gb, kb)
      for b, gb, kb in zip(params["blocks"], g["blocks"], k["blocks"])
    ],
  )
  rms = float(jnp.sqrt(jnp.mean(g["blocks"][0]["w1"] ** 2)))
  return float(loss(params) - loss(moved)), rms


@pytest.mark.parametrize(
  "family,alpha,lr",
  [("adam", 0.5, 1e-3), ("adam", 1.0, 1e-3), ("sgd", 0.5, 1.0), ("sgd", 1.0, 1.0)],
)
def test_blocks_total_update_is_depth_free(family, alpha, lr):
  # The derivation, measured: block gradients shrink as m_L^-alpha (the eps exponent) and
  # the loss drop of one step of all L blocks stays Theta(1) from depth 2 to 32.
  depths = (2, 8, 32)
  runs = {d: _loss_drop(d, alpha, family, True, lr) for d in depths}
  slope = np.polyfit(np.log(depths), np.log([runs[d][1] for d in depths]), 1)[0]
  assert abs(slope + alpha) < 0.15, slope
  ratio = runs[32][0] / runs[2][0]
  assert 0.5 < ratio < 2.0, ratio
  if (family, alpha) in (("adam", 0.5), ("sgd", 1.0)):  # where the lr rule is not 1
    raw = _loss_drop(32, alpha, family, False, lr)[0] / _loss_drop(2, alpha, family, False, lr)[0]
    assert raw > 3.0 or raw < 0.1, raw


@pytest.mark.parametrize("alpha", ALPHAS[1:])
def test_weight_decay_modes_with_depth(alpha):
  # One step, lr 0.1, lambda 0.2, zero gradients, m_d = m_L = 4. A block's hidden weight
  # has k = m_d^-1 m_L^(alpha - 1): coupled decays it by lr k lambda; width_scaled
  # cancels only the width part of k, so the depth part stays (lr m_L^(alpha-1) lambda);
  # independent by lambda whatever k is. The embedding (k = m_d^-1/2) sees no depth.
  t = deep_table(alpha=alpha)
  p = jax.tree.map(jnp.ones_like, transformer(64, 8))
  g = jax.tree.map(jnp.zeros_like, p)
  k_depth = 4.0 ** (alpha - 1)
  want = {
    "coupled": (0.1 * 0.25 * k_depth * 0.2, 0.1 * 0.5 * 0.2),
    "width_scaled": (0.1 * k_depth * 0.2, 0.1 * 0.2),
    "independent": (0.2, 0.2),
  }
  for mode, (hidden, embed) in want.items():
    tx = optim.with_learning_rate(
      optax.identity(), 0.1, 0.2, parametrization=t, weight_decay_mode=mode
    )
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(u["blocks"][3]["mlp"]["up"], -hidden, rtol=1e-6, err_msg=mode)
    np.testing.assert_allclose(u["embed"], -embed, rtol=1e-6, err_msg=mode)
