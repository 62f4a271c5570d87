"""Coordinate check (Tensor Programs V's desiderata): with Adam, muP keeps every layer's output size
flat in width after a few steps, while SP's grow.

Thresholds, from what Adam does to SP: each update moves a weight coordinate by ~lr
whatever the width, and a layer sums fan_in such moves, so update-dominated outputs grow
like width^1 (logits of the MLP, block outputs of the GPT; measured 0.76 and 1.03 for
widths 32..256 after 3 steps at lr 0.02). We require a slope above 0.4 for at least one
layer in SP, far above the init-time slopes (within +-0.15, also checked). muP must keep
every layer, logits included, within |slope| < 0.3: measured at most 0.26 (the GPT
logits, whose init part still shrinks like width^-1/2 after 3 steps).
"""

import ml_collections
import pytest

from adamlab import analysis, models
from adamlab.train import coordcheck
from adamlab.train import optimizer

WIDTHS = [32, 64, 128, 256]


def config(name, parametrization):
  c = ml_collections.ConfigDict(
    dict(
      model=models.default_config(name),
      optimizer=optimizer.default_config(),
      parametrization=parametrization,
      alignment="full",
    )
  )
  c.model.base_width = 32
  if name == "gpt":
    c.model.update(dict(seq_len=16, depth=1, num_heads=2))
  c.optimizer.update(
    dict(
      name="adamw",
      learning_rate=0.02,
      schedule="constant",
      warmup_steps=0,
      grad_clip_norm=0.0,
      per_layer_lr=parametrization != "sp",
    )
  )
  return c


@pytest.mark.parametrize("name", ["mlp", "gpt"])
def test_mup_is_flat_and_sp_grows(name):
  mup = analysis.slopes(coordcheck.run(config(name, "mup"), WIDTHS, steps=3))
  sp = analysis.slopes(coordcheck.run(config(name, "sp"), WIDTHS, steps=3))
  assert max(abs(s) for s in mup.values()) < 0.3, mup
  assert max(sp.values()) > 0.4, sp
  # At init (step 0) both are fine: the difference is made by training.
  init = analysis.slopes(coordcheck.run(config(name, "sp"), WIDTHS, steps=0), step=0)
  assert max(abs(s) for k, s in init.items() if k != "logits") < 0.15, init


def test_vit_coordinate_check_records_every_layer():
  c = config("vit", "mup")
  c.model.update(dict(depth=1, num_heads=2, patch_size=7))
  rows = coordcheck.run(c, [32, 64], steps=1)
  layers = {r["layer"] for r in rows}
  assert layers == {"patch_embed", "block0.attn", "block0.mlp_hidden", "block0.out", "logits"}
  assert {(r["width"], r["step"]) for r in rows} == {(w, s) for w in (32, 64) for s in (0, 1)}
  assert all(r["rms"] > 0 for r in rows)


def test_coordinate_check_with_skipped_steps_on():
  # optim.skip_spikes needs the loss at every update: the coordinate check passes it.
  c = config("mlp", "mup")
  c.optimizer.skip_spikes_k, c.optimizer.skip_spikes_window = 3.0, 2
  plain = coordcheck.run(config("mlp", "mup"), [32], steps=2)
  rows = coordcheck.run(c, [32], steps=2)
  # Nothing is skipped before the window holds 2 accepted steps: the same records.
  assert [r["rms"] for r in rows] == [r["rms"] for r in plain]


def test_mup_muon_is_flat_and_sp_muon_grows():
  # Muon's hidden step has spectral norm lr s whatever the width, so its hidden layers
  # stay put in both arms (measured within +-0.15); SP's one global lr grows the
  # Adam-trained readout's contribution (logits slope 0.47 after 3 steps, muP's -0.25,
  # the init part that still shrinks as width^-1/2). Thresholds: muP within 0.3 as for
  # Adam; SP's logits above 0.3 and at least 0.5 above muP's.
  mup, sp = config("gpt", "mup"), config("gpt", "sp")
  for c in (mup, sp):
    c.optimizer.name = "muon"
  mup_slopes = analysis.slopes(coordcheck.run(mup, WIDTHS, steps=3))
  sp_slopes = analysis.slopes(coordcheck.run(sp, WIDTHS, steps=3))
  assert max(abs(s) for s in mup_slopes.values()) < 0.3, mup_slopes
  assert sp_slopes["logits"] > 0.3, sp_slopes
  assert sp_slopes["logits"] - mup_slopes["logits"] > 0.5, (sp_slopes, mup_slopes)
