"""muP on a plain JAX model: a dict of arrays and a function, no Flax at all.

python examples/pytree_mlp.py
"""

import jax
import jax.numpy as jnp
import optax

from adamlab import optim

D_IN, D_OUT, BASE_WIDTH = 32, 10, 32


def shapes(width):
  return {
    "w_in": jnp.zeros((D_IN, width)),
    "b_in": jnp.zeros((width,)),
    "w_hid": jnp.zeros((width, width)),
    "w_out": jnp.zeros((width, D_OUT)),
  }


def forward(p, x):
  h1 = jax.nn.relu(x @ p["w_in"] + p["b_in"])
  h2 = jax.nn.relu(h1 @ p["w_hid"])
  return h2 @ p["w_out"]


def setup(width, parametrization="mup", lr=2e-2, seed=0):
  """(forward, loss, params, tx) at `width`: what `optim.coord_check` takes."""
  x = jax.random.normal(jax.random.PRNGKey(1), (64, D_IN))
  y = jax.random.randint(jax.random.PRNGKey(2), (64,), 0, D_OUT)
  table = optim.parametrize(
    base=shapes(BASE_WIDTH),
    target=shapes(width),
    parametrization=parametrization,
    per_layer_lr=parametrization != "sp",
  )
  params = optim.init_params(table, shapes(width), jax.random.PRNGKey(seed))
  tx = optim.adamw(lr, weight_decay=0.0, parametrization=table)
  run = lambda p: forward(optim.apply_multipliers(table, p), x)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(run(p), y).mean()
  return run, loss, params, tx


def coordinate_check(parametrization="mup", widths=(32, 64, 128, 256), steps=3):
  """{layer: slope of log2 RMS of its output against log2 width} after `steps` steps."""
  return optim.coord_check(lambda w: setup(w, parametrization), widths, steps).slopes


if __name__ == "__main__":
  for parametrization in ("mup", "sp"):
    print(
      f"{parametrization:4s}",
      "  ".join(f"{k} {v:+.2f}" for k, v in coordinate_check(parametrization).items()),
    )
