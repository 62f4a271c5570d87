"""muP on your own flax.nnx model, with adamlab.optim alone.

The params of an nnx model are its `nnx.Param` state, a pytree like any other: build
the table from the states of two abstract models (`nnx.eval_shape`), initialize the
state from it, and merge the params times their multipliers back into the model in
the loss. The four muP lines are marked.

  python examples/nnx_mlp.py
"""

import jax
import optax
from flax import nnx

from adamlab import optim

D_IN, D_OUT, BASE_WIDTH = 32, 10, 32


class MLP(nnx.Module):
  def __init__(self, width: int, rngs: nnx.Rngs):
    self.inp = nnx.Linear(D_IN, width, rngs=rngs)
    self.hidden = nnx.Linear(width, width, rngs=rngs)
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.out = nnx.Linear(width, D_OUT, rngs=rngs)

  def __call__(self, x):
    h1 = nnx.relu(self.inp(x))
    h2 = self.norm(nnx.relu(self.hidden(h1)))
    return self.out(h2)


def param_state(width):
  return nnx.state(nnx.eval_shape(lambda: MLP(width, nnx.Rngs(0))), nnx.Param)


def setup(width, parametrization="mup", lr=2e-2, seed=0):
  """(forward, loss, params, tx) at `width`: what `optim.coord_check` takes."""
  x = jax.random.normal(jax.random.PRNGKey(1), (64, D_IN))
  y = jax.random.randint(jax.random.PRNGKey(2), (64,), 0, D_OUT)
  table = optim.parametrize(
    base=param_state(BASE_WIDTH),
    target=param_state(width),
    parametrization=parametrization,
    per_layer_lr=parametrization != "sp",
  )  # muP 1
  graphdef, params = nnx.split(MLP(width, nnx.Rngs(seed)), nnx.Param)
  params = optim.init_params(table, params, jax.random.PRNGKey(seed))  # muP 2
  tx = optim.adamw(lr, weight_decay=0.0, parametrization=table)  # muP 3

  def forward(p):
    return nnx.merge(graphdef, optim.apply_multipliers(table, p))(x)  # muP 4

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(forward(p), y).mean()

  return forward, loss, params, tx


def coordinate_check(parametrization="mup", widths=(32, 64, 128, 256), steps=3):
  """{layer: slope of log2 RMS of its output against log2 width} after `steps` steps."""
  return optim.coord_check(lambda w: setup(w, parametrization), widths, steps).slopes


if __name__ == "__main__":
  for parametrization in ("mup", "sp"):
    print(
      f"{parametrization:4s}",
      "  ".join(f"{k} {v:+.2f}" for k, v in coordinate_check(parametrization).items()),
    )
