"""Depth transfer in the models: the branch multiplier and the table's depth rule.

A model at its base depth is today's model bit for bit; the depth coordinate check shows
the last block's output growing with depth under standard practice (alpha 0) and flat
under Depth-muP (1/2) and CompleteP (1) after a few Adam steps."""

import subprocess
import sys

import pytest

from adamlab import analysis, models
from adamlab.errors import ConfigError
from adamlab.train import coordcheck
from adamlab.train.config import base
from adamlab.train import optimizer
from tests.train.test_trainer import ROOT


def config(name="gpt", **model):
  c = base(name)
  c.parametrization = "mup"
  c.model.update(dict(width=32, base_width=16, depth=2, num_heads=2))
  if name == "gpt":
    c.model.seq_len = 16
  else:
    c.data.name = "fashion_mnist"
    c.model.patch_size = 7
  c.model.update(model)
  c.optimizer.update(dict(name="adamw", learning_rate=2**-6, warmup_steps=0, schedule="constant"))
  return c


@pytest.mark.parametrize("name", ["gpt", "vit"])
def test_base_depth_is_todays_model_bit_for_bit(name):
  for alpha in (0.5, 1.0):
    assert optimizer.model_table(config(name, base_depth=2, alpha=alpha)) == optimizer.model_table(
      config(name)
    )
  c = config(name, base_depth=2, alpha=1.0)
  today = coordcheck.run(config(name), widths=[32], steps=2)
  assert coordcheck.run(c, widths=[32], steps=2) == today  # every layer, every step


def test_deeper_models_scale_branches_and_block_learning_rates():
  c = config(depth=8, base_depth=2, alpha=0.5)
  model, table = optimizer.build_model(c, __import__("jax").random.PRNGKey(0))
  assert all(block.branch == 0.5 for block in model.blocks)  # (8 / 2)^-1/2
  plain = optimizer.model_table(config(depth=8))
  up, plain_up = (
    table["blocks"][3]["mlp"]["up"]["kernel"],
    plain["blocks"][3]["mlp"]["up"]["kernel"],
  )
  assert up.lr == pytest.approx(plain_up.lr * 4**-0.5)  # Adam: m_L^(alpha - 1)
  assert (
    table["embed"] == plain["embed"] and table["readout"]["kernel"] == plain["readout"]["kernel"]
  )


def test_depth_coordinate_check():
  slope = {}
  for alpha in (0.0, 0.5, 1.0):
    c = config(width=32, base_width=32, base_depth=2, alpha=alpha)
    rows = coordcheck.run(c, depths=[2, 8], steps=3)
    slope[alpha] = analysis.slopes(rows, x="depth")["last_block.out"]
  assert slope[0.0] > 0.5  # the residual stream grows with depth
  assert abs(slope[0.5]) < 0.25 and abs(slope[1.0]) < 0.25, slope


def test_the_cli_trains_a_deep_completep_model_and_checks_alpha(tmp_path):
  run = [
    sys.executable,
    "-m",
    "adamlab.cli",
    "train",
    "--config",
    "configs/gpt.py:mup",
    "--workdir",
    str(tmp_path / "run"),
    "--config.model.depth=8",
    "--config.model.base_depth=2",
    "--config.model.alpha=1",
    "--config.model.width=32",
    "--config.model.base_width=16",
    "--config.model.seq_len=16",
    "--config.steps=3",
    "--config.optimizer.warmup_steps=1",
    "--config.eval_batches=1",
  ]
  r = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr
  bad = subprocess.run(
    run[:-1] + ["--config.model.alpha=2"], cwd=ROOT, capture_output=True, text=True, timeout=600
  )
  assert bad.returncode == 2 and "model.alpha = 2" in bad.stderr


def test_alpha_without_a_base_depth_is_an_error():
  with pytest.raises(
    ConfigError,
    match=r"^model.base_depth = None: must be an integer >= 1 "
    r"when model.alpha > 0",
  ):
    models.validate(config(alpha=0.5))
  models.validate(config(alpha=0.0))  # off needs no base depth
  models.validate(config(alpha=0.5, base_depth=2))
