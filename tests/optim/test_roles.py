"""Roles from shapes on real layouts (Flax linen attention, convolutions, Equinox's
(out, in)), and every way a table can be built or used wrongly: each an error naming
the leaf, never a silently wrong multiplier."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim


class Block(nn.Module):
  """A pre-norm transformer block with an untied readout, as a user writes one."""

  width: int
  heads: int
  vocab: int = 50

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(self.vocab, self.width, name="embed")(tokens)
    h = nn.LayerNorm(name="ln1")(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attn")(h, h)
    h = nn.gelu(nn.Dense(4 * self.width, name="mlp_in")(nn.LayerNorm(name="ln2")(x)))
    x = x + nn.Dense(self.width, name="mlp_out")(h)
    return nn.Dense(self.vocab, name="readout")(nn.LayerNorm(name="ln_f")(x))


def block_shapes(width, heads):
  init = Block(width, heads).init
  return jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]


def roles(table):
  is_scale = lambda x: isinstance(x, optim.LeafScale)
  leaves = jax.tree_util.tree_flatten_with_path(table, is_leaf=is_scale)[0]
  return {"/".join(str(k.key) for k in path): (s.role, s.width_mult) for path, s in leaves}


# Width 64 -> 256: m = 4. Hand-derived: q/k/v kernels (d, heads, head_dim) and the output
# kernel (heads, head_dim, d) grow in fan-in and fan-out (hidden); their biases are
# vectors of the growing fan-out (input-like); the embedding's fan-out grows (input);
# the readout's fan-in grows (output); its bias does not grow (fixed).
WANT = {
  **{f"attn/{q}/kernel": ("hidden", 4.0) for q in ("query", "key", "value", "out")},
  **{f"attn/{q}/bias": ("input", 4.0) for q in ("query", "key", "value", "out")},
  "embed/embedding": ("input", 4.0),
  **{f"{ln}/{p}": ("input", 4.0) for ln in ("ln1", "ln2", "ln_f") for p in ("scale", "bias")},
  "mlp_in/kernel": ("hidden", 4.0),
  "mlp_in/bias": ("input", 4.0),
  "mlp_out/kernel": ("hidden", 4.0),
  "mlp_out/bias": ("input", 4.0),
  "readout/kernel": ("output", 4.0),
  "readout/bias": ("fixed", 1.0),
}


@pytest.mark.parametrize("heads", [(4, 16), (4, 4)], ids=["more_heads", "wider_heads"])
def test_linen_attention_block_roles_at_two_widths(heads):
  # More heads at a fixed head_dim (16), or wider heads at a fixed head count.
  table = optim.parametrize(base=block_shapes(64, heads[0]), target=block_shapes(256, heads[1]))
  assert roles(table) == WANT
  q = table["attn"]["query"]["kernel"]
  assert q.lr == 0.25 and q.init_std == pytest.approx(1 / 16)  # 1/m, 1/sqrt(fan_in = 256)


def test_convolutions_split_at_the_last_axis():
  conv = lambda n: {
    "stem": jnp.zeros((3, 3, 1, n)),
    "conv": jnp.zeros((3, 3, n, n)),
    "head": jnp.zeros((n, 10)),
  }
  got = roles(optim.parametrize(base=conv(16), target=conv(64)))
  assert got == {"stem": ("input", 4.0), "conv": ("hidden", 4.0), "head": ("output", 4.0)}


def test_equinox_out_in_layout_takes_fan_in_axes():
  # Equinox's Linear stores (out, in): the rule reads the first axis as fan-in, so
  # the input layer looks like an output layer until the override says otherwise.
  mlp = lambda n: {
    "w_in": jnp.zeros((n, 16)),
    "w_hid": jnp.zeros((n, n)),
    "w_out": jnp.zeros((10, n)),
  }
  assert roles(optim.parametrize(base=mlp(32), target=mlp(128)))["w_in"] == ("output", 4.0)
  out_in = lambda path, shape: (1,) if len(shape) == 2 else None
  got = roles(optim.parametrize(base=mlp(32), target=mlp(128), fan_in_axes=out_in))
  assert got == {"w_in": ("input", 4.0), "w_hid": ("hidden", 4.0), "w_out": ("output", 4.0)}


def mlp(n, d_in=16, d_out=10):
  return {
    "w_in": jnp.zeros((d_in, n)),
    "w_hid": jnp.zeros((n, n)),
    "w_out": jnp.zeros((n, d_out)),
    "b_out": jnp.zeros((d_out,)),
  }


def test_swapped_base_and_target_is_an_error_unless_asked_for():
  with pytest.raises(ValueError, match=r"^target / base width ratio = '1/4': must be >= 1"):
    optim.parametrize(base=mlp(256), target=mlp(64))
  table = optim.parametrize(base=mlp(256), target=mlp(64), allow_narrower=True)
  assert table["w_hid"].lr == 4.0  # muP's 1/m at m = 1/4, as asked


@pytest.mark.parametrize(
  "target,leaf,match",
  [
    # the input dimension changes too: a fan-in that no layer makes
    (mlp(256, d_in=32), "w_in", r"is grown by 2 \(from 16 to 32\) in its input fan alone: must"),
    # the readout's classes change: its bias grows by another ratio than the width
    (
      {**mlp(256), "b_out": jnp.zeros((20,))},
      "b_out",
      r"is grown by 2 \(from 10 to 20\) in its output fan alone: must be matched",
    ),
    # a non-width dimension alone changes in a model whose width does not
    (
      {**mlp(64), "w_out": jnp.zeros((64, 30))},
      "w_out",
      r"is grown by 3 \(from 10 to 30\) in its output fan alone: must be matched by a leaf",
    ),
  ],
  ids=["input_dim", "classes", "only_classes"],
)
def test_a_non_width_dimension_that_changes_is_an_error_naming_the_leaf(target, leaf, match):
  with pytest.raises(ValueError, match=match) as err:
    optim.parametrize(base=mlp(64), target=target)
  assert str(err.value).startswith(f"params['{leaf}']")


def test_rank_and_structure_mismatches_name_the_leaf():
  with pytest.raises(
    ValueError,
    match=r"^params\['w_hid'\] is \(256, 256, 1\), of another "
    r"rank than the base's \(64, 64\)",
  ):
    optim.parametrize(base=mlp(64), target={**mlp(256), "w_hid": jnp.zeros((256, 256, 1))})
  partial = {k: v for k, v in mlp(64).items() if k != "w_hid"}
  with pytest.raises(
    ValueError,
    match=r"^base is a tree lacking \['w_hid'\]: must be the "
    r"structure of target",
  ):
    optim.parametrize(base=partial, target=mlp(256))


def test_ambiguous_fan_in_is_an_error_asking_for_fan_in_axes():
  # (a, 3, c, 3) with a and c grown, no product rule and the last split invalid:
  # fan-in (a,) or (a, 3)?
  leaf = lambda n: {"w": jnp.zeros((n, 3, n, 3))}
  with pytest.raises(ValueError, match=r"^params\['w'\].*ambiguous.*pass fan_in_axes"):
    optim.parametrize(base=leaf(8), target=leaf(32))
  table = optim.parametrize(base=leaf(8), target=leaf(32), fan_in_axes=lambda p, s: (0, 1))
  assert (table["w"].role, table["w"].width_mult) == ("hidden", 4.0)


@pytest.mark.parametrize(
  "use", ["stable_adamw", "scale_by_parametrization", "init_params", "apply_multipliers"]
)
def test_a_table_used_with_params_of_another_width_is_an_error(use):
  table = optim.parametrize(base=mlp(32), target=mlp(128))
  params = jax.tree.map(jnp.ones_like, mlp(32))  # the base's params, not the target's
  match = r"^params\['w_hid'\] is of shape \(32, 32\): must be of shape \(128, 128\), the"
  with pytest.raises(ValueError, match=match):
    if use == "stable_adamw":
      optim.stable_adamw(1e-3, parametrization=table).init(params)
    elif use == "scale_by_parametrization":
      optim.scale_by_parametrization(table).init(params)
    elif use == "init_params":
      optim.init_params(table, params, jax.random.PRNGKey(0))
    else:
      optim.apply_multipliers(table, params)


def test_a_missing_leaf_at_init_names_it():
  table = optim.parametrize(base=mlp(32), target=mlp(128))
  params = {k: v for k, v in mlp(128).items() if k != "b_out"}
  with pytest.raises(
    ValueError,
    match=r"^params is a tree lacking \['b_out'\]: must be the "
    r"structure of the table",
  ):
    optim.adamw(1e-3, parametrization=table).init(params)


def test_masked_leaves_pass_the_shape_check():
  table = optim.parametrize(base=mlp(32), target=mlp(128))
  params = jax.tree.map(jnp.ones_like, mlp(128))
  mask = {"w_in": True, "w_hid": True, "w_out": True, "b_out": False}
  for alias in (optim.adamw, optim.stable_adamw, optim.adam_atan2):
    tx = optax.masked(alias(1e-3, parametrization=table), mask)
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(updates["b_out"], params["b_out"])  # passed through
    assert float(jnp.abs(updates["w_hid"]).max()) > 0
