"""optim.muon against a NumPy reference of its steps, and the table's Muon numbers.

The reference follows the formulas `optim.muon` documents (optax.contrib's Muon):

  mu_t = beta mu_{t-1} + (1 - beta) g_t
  mu_hat = beta mu_t / (1 - beta^(t+1)) + (1 - beta) g_t / (1 - beta^t)   (Nesterov)
  X_0 = mu_hat / (|mu_hat|_F + eps), rows <= columns (else transposed)
  X_{k+1} = a X_k + (b A + c A^2) X_k,  A = X_k X_k^T,  (a, b, c) = (3.4445, -4.775, 2.0315)
  update = -lr k (s X_5 + lambda W)

(Jordan's Muon writes Nesterov as g_t + beta buf_t with buf_t = beta buf_{t-1} + g_t:
the same direction up to the bias corrections, which differ only in early steps.)
The reference runs in float64.

Tolerance: each NS step is the polynomial f(x) = a x + b x^3 + c x^5 of the singular
values, whose slope is at most |a| = 3.4445 on [0, 1.2]; a float32 rounding of
relative size K 2^-24 (K <= 64 terms per dot product) made at any step grows by at most
3.45^5 ~ 490 by the fifth, so |X_5 - X_5(float64)| <= 490 * 64 * 6e-8 ~ 2e-3 on
entries of size <= 1.2. The tests compare at atol 2e-3 (times lr k s): a wrong
coefficient, step count, Nesterov mix, axis split, shape factor or multiplier
changes the update by 10% or more.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim

NS = (3.4445, -4.775, 2.0315)
ATOL = 2e-3


def ns_reference(x, steps=5, eps=1e-8):
  x = np.asarray(x, np.float64)
  flip = x.shape[0] > x.shape[1]
  if flip:
    x = x.T
  x = x / (np.linalg.norm(x) + eps)
  a, b, c = NS
  for _ in range(steps):
    gram = x @ x.T
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x.T if flip else x


def muon_reference(grads, beta=0.95, nesterov=True):
  """The orthogonalized direction at each step of a list of 2-D gradients."""
  mu, out = np.zeros_like(grads[0], np.float64), []
  for t, g in enumerate(grads, start=1):
    g = np.asarray(g, np.float64)
    mu = beta * mu + (1 - beta) * g
    if nesterov:
      hat = beta * mu / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
    else:
      hat = mu / (1 - beta**t)
    out.append(ns_reference(hat))
  return out


def adam_reference(grads, b1=0.9, b2=0.999, eps=1e-8):
  m = v = np.zeros_like(grads[0], np.float64)
  out = []
  for t, g in enumerate(grads, start=1):
    g = np.asarray(g, np.float64)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    out.append((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
  return out


def model(n):
  """Embedding, a multi-axis attention kernel, an MLP and a readout, like a GPT block."""
  return {
    "embed": jnp.zeros((32, n)),
    "query": {"kernel": jnp.zeros((n, 2, n // 2))},  # linen's (d, heads, head_dim)
    "up": {"kernel": jnp.zeros((n, 4 * n))},
    "down": {"kernel": jnp.zeros((4 * n, n))},
    "norm": {"scale": jnp.zeros((n,))},
    "readout": {"kernel": jnp.zeros((n, 32))},
  }


def gradients(params, steps, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), steps)
  return [
    jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape) * 0.1 + 0.01, params) for k in keys
  ]


def run(tx, params, grads):
  state, updates = tx.init(params), []
  for g in grads:
    u, state = tx.update(g, state, params)
    updates.append(u)
  return updates


@pytest.mark.parametrize("shape", ["spectral", "rms", "none"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_three_steps_match_the_reference(shape, nesterov):
  base, params = model(8), model(16)
  family = "muon_rms" if shape == "rms" else "muon"
  table = optim.parametrize(base=base, target=params, parametrization="mup", optimizer=family)
  lr, steps = 0.02, 3
  tx = optim.muon(lr, parametrization=table, shape=shape, nesterov=nesterov)
  grads = gradients(params, steps)
  updates = run(tx, params, grads)
  factors = optim.shape_factors(table, shape)
  for name, reshape in (("up", None), ("down", None), ("query", (16, 16))):
    k, s = table[name]["kernel"].lr, factors[name]["kernel"]
    g = [np.asarray(x[name]["kernel"]).reshape(reshape or x[name]["kernel"].shape) for x in grads]
    for t, want in enumerate(muon_reference(g, nesterov=nesterov)):
      got = np.asarray(updates[t][name]["kernel"]).reshape(want.shape)
      np.testing.assert_allclose(got, -lr * k * s * want, atol=ATOL * lr * k * s, rtol=0)
  # The Adam branch: Adam's direction, the table's multipliers (eps too).
  for path in (("embed",), ("readout", "kernel"), ("norm", "scale")):
    leaf = lambda tree: tree[path[0]] if len(path) == 1 else tree[path[0]][path[1]]
    scale = leaf(table)
    want = adam_reference([leaf(g) for g in grads], eps=1e-8 * scale.eps)
    for t in range(steps):
      # float32 Adam against float64: a few ulps of numbers of size <= 1/(1 - b1) ~ 10.
      np.testing.assert_allclose(
        np.asarray(leaf(updates[t])), -lr * scale.lr * want[t], rtol=1e-5, atol=1e-7
      )


def test_the_table_routes_roles_and_axes():
  table = optim.parametrize(base=model(8), target=model(16), optimizer="muon")
  dims = optim.muon_dimension_numbers(table)
  assert dims["embed"] is None and dims["readout"]["kernel"] is None
  assert dims["norm"]["scale"] is None
  query = dims["query"]["kernel"]
  assert (query.reduction_axis, query.output_axis) == ((0,), (1, 2))
  assert (dims["up"]["kernel"].reduction_axis, dims["up"]["kernel"].output_axis) == ((0,), (1,))


def test_decay_is_coupled_to_lr_and_multiplier():
  base, params = model(8), jax.tree.map(lambda p: p + 1.0, model(16))
  table = optim.parametrize(base=base, target=params, parametrization="mup", optimizer="muon")
  grads = gradients(params, 1)
  plain = run(optim.muon(0.02, parametrization=table), params, grads)[0]
  decayed = run(optim.muon(0.02, parametrization=table, weight_decay=0.1), params, grads)[0]
  for name in ("up", "readout"):
    k = table[name]["kernel"].lr
    diff = np.asarray(decayed[name]["kernel"] - plain[name]["kernel"])
    # -lr k lambda W with W = 1: float32 differences of numbers of size <= 0.02.
    np.testing.assert_allclose(diff, -0.02 * k * 0.1, atol=1e-8)


@pytest.mark.parametrize(
  "width, want",
  [
    (128, {"hidden": 1.0, "input": 0.5**0.5, "output": 0.5**0.5}),
    (256, {"hidden": 1.0, "input": 0.5, "output": 0.5}),
  ],
)
def test_mup_muon_multipliers_by_hand(width, want):
  # Base 64: m = 2 and 4. Everett's muP: a = (-1/2, 0, 1/2). Muon's hidden target
  # a + c = 0 gives c = 0; the Adam branch keeps Adam's c = 1/2 (input: 0 - (-1/2)),
  # 1/2 (output: 1 - 1/2). RMS matching's hidden target 1/2 gives c = 1/2.
  gpt = lambda n: {"embed": jnp.zeros((256, n)), "up": jnp.zeros((n, 4 * n)),
                   "readout": jnp.zeros((n, 256))}  # fmt: skip
  m = width / 64
  table = optim.parametrize(base=gpt(64), target=gpt(width), optimizer="muon")
  lrs = {k: s.lr for k, s in table.items()}
  assert lrs == pytest.approx(
    {"embed": want["input"], "up": want["hidden"], "readout": want["output"]}
  )
  rms = optim.parametrize(base=gpt(64), target=gpt(width), optimizer="muon_rms")
  assert rms["up"].lr == pytest.approx(m**-0.5)
  assert optim.shape_factors(table)["up"] == 2.0  # sqrt(4n / n)
  assert optim.shape_factors(rms, "rms")["up"] == pytest.approx(0.2 * (4 * width) ** 0.5)
  # SP: a = 0, so Muon's hidden c = 0 and the readout's Adam c = 1.
  sp = optim.parametrize(base=gpt(64), target=gpt(width), parametrization="sp", optimizer="muon")
  assert (sp["up"].lr, sp["embed"].lr, sp["readout"].lr) == pytest.approx((1.0, 1.0, 1 / m))


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(beta=1.0), "beta = 1.0"),
    (dict(ns_steps=0), "ns_steps = 0"),
    (dict(eps=-1.0), "eps = -1.0"),
    (dict(shape="orthogonal"), "shape = 'orthogonal'"),
    (dict(adam_b2=1.5), "adam_b2 = 1.5"),
    (dict(adam_clip_threshold=0.0), "adam_clip_threshold = 0.0"),
  ],
)
def test_bad_arguments_name_themselves(kwargs, match):
  table = optim.parametrize(base=model(8), target=model(16), optimizer="muon")
  with pytest.raises(ValueError, match=match):
    optim.muon(0.02, parametrization=table, **kwargs)


def test_a_table_of_another_family_is_refused():
  adam_table = optim.parametrize(base=model(8), target=model(16), optimizer="adam")
  with pytest.raises(ValueError, match="parametrization"):
    optim.muon(0.02, parametrization=adam_table)
  muon_table = optim.parametrize(base=model(8), target=model(16), optimizer="muon")
  with pytest.raises(ValueError, match="muon_rms"):  # rms needs its own exponents
    optim.muon(0.02, parametrization=muon_table, shape="rms")
  with pytest.raises(ValueError, match="parametrization = None"):
    optim.muon(0.02, parametrization=None)


def test_inject_hyperparams_and_jit():
  params = model(16)
  table = optim.parametrize(base=model(8), target=params, optimizer="muon")
  tx = optax.inject_hyperparams(optim.muon, static_args=("parametrization", "shape", "ns_steps"))(
    learning_rate=0.02, beta=0.9, parametrization=table
  )
  grads = gradients(params, 2)
  eager = run(tx, params, grads)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for g, want in zip(grads, eager):
    got, state = step(g, state, params)
    # jit may fuse differently: the NS bound above.
    np.testing.assert_allclose(got["up"]["kernel"], want["up"]["kernel"], atol=ATOL * 0.02)
  assert float(state.hyperparams["beta"]) == pytest.approx(0.9)


def test_depth_rule_is_adams():
  # Muon's step, like Adam's, does not carry the gradient's scale: a block leaf with lr
  # m_L^-c moves its branch by m_L^-(alpha + c), and L aligned blocks ask c = 1 - alpha.
  for alpha in (0.5, 1.0):
    assert optim.depth_exponents(alpha, "muon") == optim.depth_exponents(alpha, "adam")
  blocks = lambda n, depth: {"blocks": [{"w": jnp.zeros((n, n))} for _ in range(depth)]}
  table = optim.parametrize(
    base=blocks(8, 4), target=blocks(16, 4), optimizer="muon", depth=4, base_depth=2, alpha=0.5
  )
  # width: hidden c = 0 under muP; depth: m_L^-(1 - 1/2) = 2^-0.5.
  assert table["blocks"][0]["w"].lr == pytest.approx(2**-0.5)


def test_at_the_base_width_delta_tells_the_roles():
  # base == target: nothing grows, so without delta every leaf is "fixed" and Muon
  # would train nothing (it refuses such a table); delta gives the roles, and every
  # multiplier stays 1.
  plain = optim.parametrize(base=model(8), target=model(8), optimizer="muon")
  with pytest.raises(ValueError, match="delta"):
    optim.muon(0.02, parametrization=plain)
  table = optim.parametrize(base=model(8), target=model(8), delta=model(16), optimizer="muon")
  dims = optim.muon_dimension_numbers(table)
  assert dims["up"]["kernel"] is not None and dims["embed"] is None
  assert all(s.lr == 1.0 and s.multiplier == 1.0 for s in jax.tree.leaves(table, is_leaf=_is_scale))
  grown = optim.parametrize(base=model(8), target=model(16), delta=model(32), optimizer="muon")
  assert grown == optim.parametrize(base=model(8), target=model(16), optimizer="muon")


def _is_scale(x):
  return isinstance(x, optim.LeafScale)
