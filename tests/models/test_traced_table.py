"""The trainer's models, read from their computation: `optim.parametrize(apply=)` on
each model's forward gives the table the trainer builds from shapes. The trainer's
layouts are ones the shape rule knows ((in, out) kernels, no stacked leaves), so the two
must agree entry for entry; a difference is a bug in one of them."""

import importlib

import jax
import ml_collections
import pytest

from adamlab import models, optim
from adamlab.train import optimizer

build = importlib.import_module("adamlab.models.build")
FIELDS = ("role", "width_mult", "multiplier", "lr", "eps", "readout_multiplier")

CASES = {
  "gpt_tied_rotary_swiglu": ("gpt", dict(tied_embeddings=True, positions="rotary", mlp="swiglu")),
  "gpt_heads_grow_qk_norm": ("gpt", dict(head_dim=16, qk_layernorm=True)),
  "vit_scanned_gap": ("vit", dict(pool="gap", scan_layers=True, remat="block")),
  "mlp": ("mlp", dict()),
}


def config(name, extra):
  c = ml_collections.ConfigDict(
    dict(
      model=models.default_config(name),
      optimizer=optimizer.default_config(),
      parametrization="mup",
      alignment="full",
    )
  )
  c.model.update(dict(width=64, base_width=32))
  if name != "mlp":
    c.model.update(dict(depth=2, num_heads=2))
  c.model.update(dict(gpt=dict(seq_len=16), vit=dict(patch_size=7)).get(name, {}))
  c.model.update(extra)
  return c


@pytest.mark.parametrize("case", CASES)
def test_the_traced_table_is_the_trainers(case):
  c = config(*CASES[case])
  model, table = optimizer.build_model(c, jax.random.PRNGKey(0))
  apply, _ = models.functional(model)
  x = models.task(c.model).fixed_batch(2, jax.random.PRNGKey(1))[0]
  traced = optim.parametrize(
    base=build.param_shapes(c, 32), target=build.param_shapes(c, 64), apply=lambda p: apply(p, x)
  )
  is_scale = lambda s: isinstance(s, optim.LeafScale)
  want = jax.tree_util.tree_flatten_with_path(table, is_leaf=is_scale)[0]
  got = jax.tree.leaves(traced, is_leaf=is_scale)
  assert len(want) == len(got)
  for (path, s), t in zip(want, got):
    name = jax.tree_util.keystr(path)
    assert [getattr(s, f) for f in FIELDS] == [getattr(t, f) for f in FIELDS], name
    # A learned position table is added to the activations: by use a vector, whose
    # value init keeps (its init_std is not used); every other leaf's std is the same.
    if t.kind != "vector":
      assert s.init_std == t.init_std, name
  if c.model.get("tied_embeddings"):
    # muP at m = 2: the tied embedding read out has the output role's multiplier m^-1/2
    # (rel=1e-12: 2^-1/2 computed two ways differs by a few ulps at most).
    assert table["embed"].readout_multiplier == pytest.approx(2**-0.5, rel=1e-12)
