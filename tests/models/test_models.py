import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from adamlab import models
from adamlab.errors import ConfigError
from adamlab.train import optimizer


def config(name, parametrization="sp", width=32, base_width=32, **model):
  c = ml_collections.ConfigDict(
    dict(
      model=models.default_config(name),
      optimizer=optimizer.default_config(),
      parametrization=parametrization,
      alignment="full",
    )
  )
  c.model.update(dict(width=width, base_width=base_width, **model))
  if name == "gpt":
    c.model.seq_len = 16
  return c


def inputs(name, batch=2):
  if name == "gpt":
    return jax.random.randint(jax.random.PRNGKey(1), (batch, 16), 0, 256)
  if name == "mlp":
    return jax.random.normal(jax.random.PRNGKey(1), (batch, 28 * 28))
  return jax.random.normal(jax.random.PRNGKey(1), (batch, 28, 28, 1))


@pytest.mark.parametrize("name", ["gpt", "vit", "mlp"])
def test_every_parametrization_is_sp_at_base_width(name):
  x = inputs(name)
  sp_model, _ = optimizer.build_model(config(name, "sp", 32, 32), jax.random.PRNGKey(0))
  sp_out = sp_model(x)
  sp_params = nnx.to_pure_dict(nnx.state(sp_model, nnx.Param))
  for p in ("ntk", "mup", "mfp", "mup_tp5"):
    model, table = optimizer.build_model(config(name, p, 32, 32), jax.random.PRNGKey(0))
    leaves = jax.tree.leaves(table, is_leaf=lambda x: hasattr(x, "role"))
    assert {leaf.multiplier for leaf in leaves} == {1.0}
    jax.tree.map(
      np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(model, nnx.Param)), sp_params
    )
    np.testing.assert_array_equal(model(x), sp_out)


def test_gpt_roles_axes_and_table_drive_init():
  model, table = optimizer.build_model(
    config("gpt", "mup", 128, 32, num_heads=4), jax.random.PRNGKey(0)
  )
  roles = jax.tree.map(lambda e: e.role, table, is_leaf=lambda x: hasattr(x, "role"))
  assert roles["embed"] == "input" and roles["pos_embed"] == "input"
  assert roles["blocks"][0]["attn"]["qkv"]["kernel"] == "hidden"
  assert roles["blocks"][0]["mlp"]["down"]["kernel"] == "hidden"
  assert roles["readout"]["kernel"] == "output"
  assert roles["final_norm"]["scale"] == "input"
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param):
      assert len(var.get_metadata("axes")) == var[...].ndim, path
  # mup at m = 4: readout multiplier 1/2, embedding multiplier 2, hidden init std 1/sqrt(128).
  assert model.readout.kernel.get_metadata("multiplier") == 0.5
  assert model.embed.get_metadata("multiplier") == 2.0
  qkv = model.blocks[0].attn.qkv.kernel[...]
  assert float(jnp.std(qkv)) == pytest.approx(128**-0.5, rel=0.05)
  # ones-initialised scales start at an effective value of exactly 1.
  scale = model.final_norm.scale
  np.testing.assert_allclose(scale[...] * scale.get_metadata("multiplier"), 1.0, rtol=1e-6)


def test_gpt_narrower_than_its_base_width_is_mup():
  """Width 32 under base 128 is muTransfer down from the base (m = 32/128): Adam's muP
  (Tensor Programs V, Table 3) in effective terms, multiplier times the stored value,
  which hold in every abc-convention. Hidden: lr 1/fan_in (m^-1 = 4, multiplier 1),
  init std 1/sqrt(fan_in). Output: init and update 1/fan_in (both m^-1 times the
  base's). Input: init and update Theta(1) (the base's)."""
  m = 32 / 128
  target = models.table(config("gpt", "mup", 32, 128, num_heads=4), "adam")
  base = models.table(config("gpt", "mup", 128, 128, num_heads=4), "adam")
  effective = {"hidden": (m**-0.5, m**-1), "output": (m**-1, m**-1), "input": (1.0, 1.0)}
  roles = {"qkv": "hidden", "out": "hidden", "up": "hidden", "down": "hidden"}
  roles.update(readout="output", embed="input", pos_embed="input", bias="input", scale="input")
  is_leaf = lambda x: hasattr(x, "role")
  leaves = jax.tree_util.tree_flatten_with_path(target, is_leaf=is_leaf)[0]
  assert len(leaves) == len(jax.tree.leaves(base, is_leaf=is_leaf))
  for (path, t), b in zip(leaves, jax.tree.leaves(base, is_leaf=is_leaf)):
    names = [str(getattr(k, "key", "")) for k in path]
    role = roles[names[-1] if names[-1] in roles else names[-2]]
    assert t.role == role, names
    init, lr = effective[role]
    # (approx's default rel 1e-6: products of float64 powers of 1/4, equal to a few ulps)
    assert t.multiplier * t.init_std == pytest.approx(init * b.multiplier * b.init_std), names
    assert t.multiplier * t.lr == pytest.approx(lr * b.multiplier * b.lr), names
    if role == "hidden":
      assert (t.lr, t.multiplier) == (pytest.approx(4.0), 1.0), names
      fan_in = t.shape[0]  # (in, out) kernels
      assert t.init_std == pytest.approx(fan_in**-0.5), names


@pytest.mark.parametrize("name", ["gpt", "vit"])
def test_options_and_bf16(name):
  extra = dict(
    mlp="swiglu", qk_layernorm=True, zero_init_query=True, zero_init_readout=True, dtype="bfloat16"
  )
  if name == "gpt":
    extra.update(positions="rotary", z_loss=1e-4)
  else:
    extra.update(pool="gap")
  model, _ = optimizer.build_model(config(name, "mup", 64, 32, **extra), jax.random.PRNGKey(0))
  out = model(inputs(name))
  assert out.dtype == jnp.float32 and bool(jnp.all(out == 0.0))  # zero readout
  assert model.blocks[0].attn.qkv.kernel[...].dtype == jnp.float32
  assert float(jnp.abs(model.blocks[0].attn.qkv.kernel[...][:, :64]).max()) == 0.0
  assert float(jnp.abs(model.blocks[0].attn.qkv.kernel[...][:, 64:]).max()) > 0.0


def test_gpt_is_causal():
  model, _ = optimizer.build_model(config("gpt"), jax.random.PRNGKey(0))
  x = inputs("gpt")
  y = x.at[:, 10].set((x[:, 10] + 1) % 256)
  a, b = model(x), model(y)
  np.testing.assert_allclose(a[:, :10], b[:, :10], rtol=1e-5, atol=1e-5)
  assert not np.allclose(a[:, 10:], b[:, 10:])


def test_vit_handles_224_rgb_and_names_the_patch_embedding():
  c = config("vit", image_size=224, channels=3, patch_size=32, depth=1)
  model, table = optimizer.build_model(c, jax.random.PRNGKey(0))
  out = model(jnp.zeros((1, 224, 224, 3)))
  assert out.shape == (1, 10)
  # At the base width the roles come from the model at twice the width (`delta`): the
  # patch embedding is an input layer, with every multiplier 1.
  patch = table["patch_embed"]["kernel"]
  assert (patch.role, patch.width_mult, patch.lr) == ("input", 1.0, 1.0)


BAD = [
  (dict(width=30), "model.width"),
  (dict(base_width=30), "model.base_width"),
  (dict(width=0), "model.width"),
  (dict(base_width=-1), "model.base_width"),
  (dict(patch_size=5), "model.patch_size"),
  (dict(mlp="relu"), "model.mlp"),
  (dict(dtype="float8"), "model.dtype"),
]


@pytest.mark.parametrize("change,field", BAD)
def test_bad_model_config_names_the_field(change, field):
  with pytest.raises(ConfigError, match=f"^{field} = "):
    optimizer.build_model(config("vit", **change), jax.random.PRNGKey(0))


@pytest.mark.parametrize("field,value", [("parametrization", "mu_p"), ("alignment", "some")])
def test_bad_parametrization_or_alignment(field, value):
  c = config("mlp")
  c[field] = value
  with pytest.raises(ConfigError, match=f"^{field} = "):
    optimizer.build_model(c, jax.random.PRNGKey(0))


def test_fixed_head_dim_grows_the_heads():
  model, _ = optimizer.build_model(config("gpt", "mup", 64, 32, head_dim=16), jax.random.PRNGKey(0))
  attn = model.blocks[0].attn
  assert attn.heads == 4
  assert attn.scale == pytest.approx(16**-0.5)  # head size fixed: muP's 1/d changes nothing
  assert model(inputs("gpt")).shape == (2, 16, 256)
  with pytest.raises(ConfigError, match="^model.width = 64: must be a multiple of model.head_dim"):
    optimizer.build_model(config("gpt", "mup", 64, 32, head_dim=24), jax.random.PRNGKey(0))
