"""muP on your own Flax linen transformer, with adamlab.optim alone.

The model is written as anyone writes it (nn.MultiHeadDotProductAttention, LayerNorm,
a tied or untied readout); muP adds four lines, marked "muP" below:

  1. the table, from the param shapes at a base width and at this width;
  2. the params, initialized from the table;
  3. the optimizer, reading its per-layer learning rates from the table;
  4. the forward pass, on the params times the table's multipliers.

A tied readout also scales its logits by the table's readout multiplier.

The table reads how each parameter is used from the forward (`apply=`): attention's
(d, heads, head_dim) kernels, the tied embedding's lookup and readout. The coordinate
check (`optim.coord_check`) trains each width for a few Adam steps and fits how the RMS
of every layer's output grows with width: about 0 under muP, growing under the
standard parametrization at one learning rate.

  python examples/linen_transformer.py            # muP and SP, untied and tied
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from adamlab import optim

VOCAB, SEQ, BASE_WIDTH, HEAD_DIM = 64, 16, 32, 8


class Transformer(nn.Module):
  width: int
  depth: int = 2
  tied: bool = False
  logit_scale: float = 1.0  # a tied readout's muP factor (1: none), on x before the product

  @nn.compact
  def __call__(self, tokens):
    embed = nn.Embed(VOCAB, self.width, name="embed")
    x = embed(tokens)
    for i in range(self.depth):
      h = nn.LayerNorm(name=f"ln_attn_{i}")(x)
      x = x + nn.MultiHeadDotProductAttention(num_heads=self.width // HEAD_DIM, name=f"attn_{i}")(
        h, h, mask=nn.make_causal_mask(tokens)
      )
      h = nn.LayerNorm(name=f"ln_mlp_{i}")(x)
      x = x + nn.Dense(self.width, name=f"mlp_out_{i}")(
        nn.gelu(nn.Dense(4 * self.width, name=f"mlp_in_{i}")(h))
      )
    x = nn.LayerNorm(name="ln_f")(x)
    return embed.attend(self.logit_scale * x) if self.tied else nn.Dense(VOCAB, name="readout")(x)


def param_shapes(width, tied, depth=2):
  model = Transformer(width, depth, tied)
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, SEQ), jnp.int32))["params"]


def setup(width, parametrization="mup", tied=False, lr=2e-2, seed=0, depth=2):
  """(forward, loss, params, tx) at `width`: what `optim.coord_check` takes."""
  key = jax.random.PRNGKey(seed)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (8, SEQ + 1), 0, VOCAB)
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  table = optim.parametrize(
    base=param_shapes(BASE_WIDTH, tied, depth),
    target=param_shapes(width, tied, depth),
    apply=lambda p: Transformer(width, depth, tied).apply({"params": p}, inputs),
    parametrization=parametrization,
    per_layer_lr=parametrization != "sp",
  )  # muP 1
  scale = 1.0
  if tied:  # the embedding's readout factor, over the multiplier its effective value already has
    emb = table["embed"]["embedding"]
    scale = emb.readout_multiplier / emb.multiplier
  model = Transformer(width, depth, tied, logit_scale=scale)
  params = optim.init_params(table, model.init(key, inputs)["params"], key)  # muP 2
  tx = optim.adamw(lr, weight_decay=0.0, parametrization=table)  # muP 3

  def forward(p):
    return model.apply({"params": optim.apply_multipliers(table, p)}, inputs)  # muP 4

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(forward(p), targets).mean()

  return forward, loss, params, tx


def coordinate_check(
  parametrization="mup", tied=False, widths=(32, 64, 128, 256), steps=3, depth=2
):
  """{layer: slope of log2 RMS of its output against log2 width} after `steps` steps."""
  make = lambda w: setup(w, parametrization, tied, depth=depth)
  return optim.coord_check(make, widths, steps).slopes


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3)
  args = parser.parse_args()
  for tied in (False, True):
    for parametrization in ("mup", "sp"):
      got = coordinate_check(parametrization, tied, steps=args.steps)
      print(
        f"{'tied' if tied else 'untied':7s} {parametrization:4s}",
        "  ".join(f"{k} {v:+.2f}" for k, v in got.items()),
      )
