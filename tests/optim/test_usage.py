"""parametrize(apply=): roles read from the model's computation. Each check builds two
layouts of the same function and demands equal table entries; the numbers they must
equal are derived by hand from muP (Everett et al. 2024, Table 1: at width ratio m,
hidden lr 1/m and init std sigma_0 m^-1/2, input multiplier m^1/2, output multiplier
m^-1/2, eps m^-g)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamlab import optim

S = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
X = jnp.ones((2, 3, 16))  # (batch, seq, features): the example input the forward closes over
TOKENS = jnp.zeros((2, 3), jnp.int32)
FIELDS = ("role", "width_mult", "multiplier", "init_std", "lr", "eps", "readout_multiplier")
# Hand-derived numbers are compared at rel=1e-12: each is a product of a few float64
# powers, equal to the table's within a few ulps (1e-16 each). Entries of two layouts
# are compared exactly: the same arithmetic on the same ratios.


def entry(s):
  return tuple(getattr(s, f) for f in FIELDS)


def table(make, forward, base=32, target=128, **kwargs):
  return optim.parametrize(
    base=make(base), target=make(target), apply=lambda p: forward(p), **kwargs
  )


# --- stacked against unrolled layers ---------------------------------------------------

L = 3


def stacked(n):
  return {"w_in": S(16, n), "blocks": {"norm": S(L, n), "w1": S(L, n, 4 * n), "w2": S(L, 4 * n, n)}}


def unrolled(n):
  layer = lambda: {"norm": S(n), "w1": S(n, 4 * n), "w2": S(4 * n, n)}
  return {"w_in": S(16, n), "blocks": [layer() for _ in range(L)]}


def layer(h, p):
  x = h * jax.lax.rsqrt(jnp.mean(h * h, -1, keepdims=True)) * p["norm"]
  return h + jax.nn.gelu(x @ p["w1"]) @ p["w2"]


def scanned(p):
  h, _ = jax.lax.scan(lambda h, q: (layer(h, q), None), X @ p["w_in"], p["blocks"])
  return h


def fori(p):  # the stack indexed with a traced counter
  body = lambda i, h: layer(h, jax.tree.map(lambda a: a[i], p["blocks"]))
  return jax.lax.fori_loop(0, L, body, X @ p["w_in"])


def loop(p):
  h = X @ p["w_in"]
  for q in p["blocks"]:
    h = layer(h, q)
  return h


@pytest.mark.parametrize("forward", [scanned, fori], ids=["scan", "fori_loop"])
def test_stacked_leaves_get_the_unrolled_layers_entries(forward):
  stack, unroll = table(stacked, forward), table(unrolled, loop)
  shapes_only = optim.parametrize(base=unrolled(32), target=unrolled(128))
  for name in ("norm", "w1", "w2"):
    s = stack["blocks"][name]
    assert s.layer_axes == (0,)
    for i in range(L):
      assert entry(s) == entry(unroll["blocks"][i][name]), name
      assert entry(s) == entry(shapes_only["blocks"][i][name]), name  # the shape rule too
  # Hand-derived: w1's fan-in is d (32 at the base), not L * d.
  assert stack["blocks"]["w1"].init_std == pytest.approx(32**-0.5 * 4**-0.5, rel=1e-12)
  assert (stack["blocks"]["norm"].role, stack["blocks"]["norm"].kind) == ("input", "vector")


def test_linen_scan_matches_the_unrolled_linen_model():
  class Layer(nn.Module):
    width: int

    @nn.compact
    def __call__(self, h, _):
      return h + nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(h)))), None

  class Model(nn.Module):
    width: int
    scan: bool

    @nn.compact
    def __call__(self, x):
      h = nn.Dense(self.width)(x)
      if self.scan:
        stack = nn.scan(Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=L)
        return stack(self.width, name="blocks")(h, None)[0]
      for i in range(L):
        h = Layer(self.width, name=f"blocks_{i}")(h, None)[0]
      return h

  def built(scan, n):
    shapes = jax.eval_shape(Model(n, scan).init, jax.random.PRNGKey(0), X)
    return optim.parametrize(
      base=jax.eval_shape(Model(32, scan).init, jax.random.PRNGKey(0), X),
      target=shapes,
      apply=lambda p: Model(n, scan).apply(p, X),
    )["params"]

  stack, unroll = built(True, 128), built(False, 128)
  for i in range(L):
    for path in (("Dense_0", "kernel"), ("Dense_1", "bias"), ("LayerNorm_0", "scale")):
      a, b = stack["blocks"], unroll[f"blocks_{i}"]
      for k in path:
        a, b = a[k], b[k]
      assert entry(a) == entry(b), path


# --- kernel and readout layouts ----------------------------------------------------------


def mlp_in_out(n):
  return {"w_in": S(16, n), "w_hid": S(n, n), "w_out": S(n, 10)}


def mlp_out_in(n):  # Equinox's Linear: (out, in), used as W @ x
  return {"w_in": S(n, 16), "w_hid": S(n, n), "w_out": S(10, n)}


def test_out_in_kernels_get_the_in_out_entries():
  a = table(mlp_in_out, lambda p: jnp.tanh(jnp.tanh(X @ p["w_in"]) @ p["w_hid"]) @ p["w_out"])
  b = table(mlp_out_in, lambda p: p["w_out"] @ jnp.tanh(p["w_hid"] @ jnp.tanh(p["w_in"] @ X[0, 0])))
  for k in a:
    assert entry(a[k]) == entry(b[k]), k
  assert [a[k].role for k in ("w_in", "w_hid", "w_out")] == ["input", "hidden", "output"]


def lm(readout_shape):
  return lambda n: {"embed": S(50, n), "head": S(*readout_shape(n))}


def test_vocab_d_readout_gets_the_d_vocab_entries():
  a = table(lm(lambda n: (n, 50)), lambda p: jnp.take(p["embed"], TOKENS, axis=0) @ p["head"])
  b = table(lm(lambda n: (50, n)), lambda p: jnp.take(p["embed"], TOKENS, axis=0) @ p["head"].T)
  assert entry(a["head"]) == entry(b["head"]) and entry(a["embed"]) == entry(b["embed"])
  # muP at m = 4: the readout's multiplier is m^-1/2 (the shape rule gave m^1/2).
  assert (b["head"].role, b["head"].multiplier) == ("output", 0.5)
  assert (b["embed"].role, b["embed"].kind, b["embed"].multiplier) == ("input", "embedding", 2.0)


def test_a_tied_embedding_keeps_its_lookup_role_and_its_readout_multiplier():
  t = table(lambda n: {"embed": S(50, n)}, lambda p: jnp.take(p["embed"], TOKENS, 0) @ p["embed"].T)
  e = t["embed"]
  assert (e.role, e.kind, e.multiplier, e.readout_multiplier) == ("input", "embedding", 2.0, 0.5)


def test_grouped_query_kernels_with_growing_head_dim_take_fan_in_d():
  kv = 2

  def split(n):
    return {"w_in": S(16, n), "wk": S(n, kv, n // 4)}

  def fused(n):
    return {"w_in": S(16, n), "wk": S(n, kv * (n // 4))}

  a = table(split, lambda p: jnp.einsum("btd,dkh->btkh", X @ p["w_in"], p["wk"]))
  b = table(fused, lambda p: (X @ p["w_in"] @ p["wk"]).reshape(2, 3, kv, -1))
  assert a["wk"].fan_in_axes == (0,) and entry(a["wk"]) == entry(b["wk"])
  assert a["wk"].init_std == pytest.approx(32**-0.5 * 4**-0.5, rel=1e-12)  # not / sqrt(kv)


def test_llamas_rounded_feed_forward_size_has_its_own_ratio():
  f = lambda n: 32 * -(-8 * n // (3 * 32))  # multiple_of * ceil(8d/3 / multiple_of)
  assert (f(64), f(256)) == (192, 704)
  make = lambda n: {"w_in": S(16, n), "w1": S(n, f(n)), "w2": S(f(n), n), "w_out": S(n, 10)}
  fwd = lambda p: (jax.nn.silu(X @ p["w_in"] @ p["w1"]) @ p["w2"]) @ p["w_out"]
  t = table(make, fwd, base=64, target=256)
  assert t["w1"].lr == 1 / 4  # fan-in d: 64 -> 256
  assert t["w2"].lr == pytest.approx(192 / 704, rel=1e-12)  # fan-in 192 -> 704
  # eps follows the gradient's scale, set by the readout's backward signal (1/4).
  assert t["w2"].eps == 1 / 4
  # The shape rule takes the two ratios too, with no apply.
  assert optim.parametrize(base=make(64), target=make(256))["w2"].lr == t["w2"].lr


# --- through the transformations of JAX --------------------------------------------------


def test_use_is_followed_through_jit_remat_cond_while_custom_derivatives_and_vmap():
  def make(n):
    return {"w_in": S(16, n), "w": S(L, n, n), "experts": S(2, n, n), "w_out": S(n, 10)}

  @jax.custom_vjp
  def readout(h, w):
    return h @ w

  readout.defvjp(lambda h, w: (h @ w, (h, w)), lambda res, g: (g @ res[1].T, res[0].T @ g))

  def forward(p):
    h = jax.jit(lambda a, w: a @ w)(X, p["w_in"])
    h = jax.checkpoint(lambda h: jax.nn.relu(h @ p["w"][0]))(h)
    h = jax.lax.cond(True, lambda h: h @ p["w"][1], lambda h: h, h)
    n = jnp.asarray(L)  # a traced bound: a while loop, not a scan
    h = jax.lax.fori_loop(2, n, lambda i, h: h @ p["w"][i], h)
    # vmapped over weights and inputs (a vmap over weights alone against one shared
    # input is a product whose extra axis is fan-out, as attention heads are).
    h = jax.vmap(lambda w, h: h @ w)(p["experts"], jnp.stack([h, h])).sum(0)
    return readout(h, p["w_out"])

  t = table(make, forward)
  assert (t["w"].role, t["w"].fan_in_axes, t["w"].layer_axes) == ("hidden", (1,), (0,))
  assert (t["experts"].role, t["experts"].layer_axes) == ("hidden", (0,))
  assert t["w"].lr == t["experts"].lr == 1 / 4
  assert (t["w_out"].role, t["w_out"].multiplier) == ("output", 0.5)  # through custom_vjp


def test_convolution_kernels_sum_over_space_and_input_channels():
  img = jnp.ones((1, 8, 8, 3))

  def forward(p):
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.lax.conv_general_dilated(img, p["c1"], (1, 1), "SAME", dimension_numbers=dn)
    return jax.lax.conv_general_dilated(h, p["c2"], (1, 1), "SAME", dimension_numbers=dn)

  t = table(lambda n: {"c1": S(3, 3, 3, n), "c2": S(3, 3, n, n)}, forward)
  assert t["c2"].fan_in_axes == (0, 1, 2) and t["c2"].role == "hidden"
  assert t["c2"].init_std == pytest.approx((9 * 32) ** -0.5 * 4**-0.5, rel=1e-12)


# --- init and depth ----------------------------------------------------------------------


def test_init_params_keeps_stacked_gains_and_draws_each_layer_at_its_std():
  t = table(stacked, scanned)
  values = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), stacked(128))
  p = optim.init_params(t, values, jax.random.PRNGKey(0))
  eff = optim.apply_multipliers(t, p)
  np.testing.assert_array_equal(eff["blocks"]["norm"], 1.0)  # the user's ones, exactly
  want = 32**-0.5 * 4**-0.5
  for i in range(L):
    # A std estimated from k = 128 * 512 normal draws has relative sd 1/sqrt(2k) = 0.003;
    # 0.02 is over 6 of those.
    assert float(p["blocks"]["w1"][i].std()) == pytest.approx(want, rel=0.02)


def test_an_int_leaf_is_an_error_naming_it():
  t = optim.parametrize(base={"w": S(4, 4)}, target={"w": S(8, 8)})
  with pytest.raises(ValueError, match=r"^params\['w'\] is of dtype int32: must be a float"):
    optim.init_params(t, {"w": jnp.zeros((8, 8), jnp.int32)}, jax.random.PRNGKey(0))


def test_the_depth_rule_knows_stacked_blocks():
  def make(n, depth):
    return {"w_in": S(16, n), "layers": {"w": S(depth, n, n)}}

  def forward(p):
    return jax.lax.scan(lambda h, w: (h + h @ w, None), X @ p["w_in"], p["layers"]["w"])[0]

  kw = dict(apply=forward, depth=8, base_depth=2, alpha=0.5)
  t = optim.parametrize(base=make(32, 8), target=make(128, 8), **kw)
  # Depth-muP at m_L = 4: Adam's block lr m_L^-(1 - alpha) = 1/2, eps m_L^-alpha = 1/2.
  assert t["layers"]["w"].lr == pytest.approx(1 / 4 * 1 / 2, rel=1e-12)
  assert t["layers"]["w"].eps == pytest.approx(1 / 4 * 1 / 2, rel=1e-12)
  assert t["w_in"].lr == 1 / 2  # outside the stack: width only
  with pytest.raises(ValueError, match=r"^params\['layers'\]\['w'\] is a stack of 8 layers"):
    optim.parametrize(base=make(32, 8), target=make(128, 8), **{**kw, "depth": 6})


# --- refusals ------------------------------------------------------------------------------

mlp = lambda n: {"w_in": S(16, n), "w_out": S(n, 10)}


@pytest.mark.parametrize(
  "make,forward,match",
  [
    (mlp, lambda p: X @ p["w_in"], r"^params\['w_out'\] is never read by apply"),
    (
      lambda n: {**mlp(n), "s": S(n)},
      lambda p: (X @ p["w_in"] @ p["w_out"]) * jnp.sum(p["s"]),
      r"^params\['s'\] is used only by reduce_sum, which do not say its fan-in: .*fan_in_axes",
    ),
    (
      lambda n: {"a": S(n, 4), "b": S(4, n)},
      lambda p: X[..., :1] * jnp.ones(p["a"].shape[0]) @ (p["a"] @ p["b"]),
      r"^params\['a'\] is used only by dot_general with another parameter",
    ),
    (
      lambda n: {"w": S(16, n), "tied": S(n, n)},
      lambda p: (X @ p["w"]) @ p["tied"] @ p["tied"].T,
      r"^params\['tied'\] is contracted over axes \(0,\) and \(1,\) in two products",
    ),
  ],
  ids=["unused", "reduced", "param_product", "two_fan_ins"],
)
def test_a_use_the_trace_cannot_decide_is_an_error_naming_the_leaf(make, forward, match):
  with pytest.raises(ValueError, match=match):
    table(make, forward)
  if "fan_in_axes" in match or "two products" in match:  # the error's advice works
    leaf = match.split("'")[1]
    given = lambda path, shape: (0,) if path == (leaf,) else None
    t = table(make, forward, fan_in_axes=given)
    assert t[leaf].fan_in_axes == (0,) and t[leaf].kind == "matrix"


def test_fan_in_axes_decide_a_masked_weight():
  # A weight times a constant mask of its own shape: the trace sees an elementwise use
  # (it cannot tell a mask from an activation), so it reads a vector, and init_params
  # would keep its value. fan_in_axes says what it is.
  mask = jnp.triu(jnp.ones((128, 128)))
  fwd = lambda p: jnp.tanh(X @ p["w_in"]) @ (p["w"] * mask) @ p["w_out"]
  make = lambda n: {"w_in": S(16, n), "w": S(n, n), "w_out": S(n, 10)}
  assert table(make, fwd)["w"].kind == "vector"
  t = table(make, fwd, fan_in_axes=lambda path, shape: (0,) if path == ("w",) else None)
  assert (t["w"].role, t["w"].kind, t["w"].lr) == ("hidden", "matrix", 1 / 4)


def test_the_trace_overrules_no_one_silently():
  fwd = lambda p: X @ p["w_in"] @ p["w_out"]
  with pytest.raises(ValueError, match=r"^params\['w_in'\] is given fan_in_axes \(1,\), but"):
    table(mlp, fwd, fan_in_axes=lambda path, shape: (1,) if path == ("w_in",) else None)
  grow_layers = lambda n: {"w_in": S(16, n), "w": S(n // 8, n, n)}
  scan = lambda p: jax.lax.scan(lambda h, w: (h @ w, None), X @ p["w_in"], p["w"])[0]
  with pytest.raises(ValueError, match=r"^params\['w'\] is .* in axis 0, which apply slices"):
    table(grow_layers, scan)
  grow_vocab = lambda n: {"embed": S(n, n), "head": S(n, 10)}
  with pytest.raises(ValueError, match=r"^params\['embed'\] is .* in its looked-up axes \(0,\)"):
    table(grow_vocab, lambda p: jnp.take(p["embed"], TOKENS, 0) @ p["head"])
  with pytest.raises(ValueError, match=r"^apply = 3: must be a function"):
    optim.parametrize(base=mlp(32), target=mlp(128), apply=3)
  with pytest.raises(ValueError, match=r"^apply is a forward that fails on these params"):
    table(mlp, lambda p: p["w_out"] @ X)
