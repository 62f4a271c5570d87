"""A short demo of the optimizers: a small MLP on a synthetic task, every optimizer.

Each run uses an aggressive learning rate with a short warmup, the setting where Adam's
second moment falls behind; the table shows the final loss and the largest RMS_t seen,
the quantity StableAdamW clips on.
"""

import time

import jax
import jax.numpy as jnp
import optax

from adamlab import optim
from adamlab.train import optimizer


def _task(key, n=2048, d_in=32, classes=10):
  kx, kw = jax.random.split(key)
  x = jax.random.normal(kx, (n, d_in))
  teacher = jax.random.normal(kw, (d_in, classes))
  return x, jnp.argmax(jnp.tanh(x @ teacher) + 0.3 * jnp.sin(3 * x[:, :classes]), axis=-1)


def _shapes(width, d_in=32, classes=10):
  return {
    "w1": jax.ShapeDtypeStruct((d_in, width), jnp.float32),
    "w2": jax.ShapeDtypeStruct((width, width), jnp.float32),
    "w3": jax.ShapeDtypeStruct((width, classes), jnp.float32),
  }


def train(name, parametrization, width=256, base_width=64, steps=300, lr=3e-2, seed=0):
  """Train the MLP; return (final loss, max over steps of the largest per-tensor RMS_t)."""
  opt = optimizer.default_config()
  opt.update(
    dict(
      name=name, learning_rate=lr, warmup_steps=10, total_steps=steps, b2=0.99, grad_clip_norm=0.0
    )
  )
  shapes, base = _shapes(width), _shapes(base_width)
  table = optim.parametrize(
    base=base, target=shapes, parametrization=parametrization, optimizer=optimizer.family(name)
  )
  mult = optim.forward_multipliers(table)
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  params = {
    k: table[k].init_std * jax.random.normal(kk, s.shape)
    for (k, s), kk in zip(shapes.items(), keys)
  }
  x, y = _task(keys[3])
  tx = optimizer.build(opt, table, params)

  def loss_fn(p):
    h = jax.nn.relu(mult["w1"] * x @ p["w1"])
    h = jax.nn.relu(mult["w2"] * h @ p["w2"])
    logits = mult["w3"] * h @ p["w3"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, s):
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  state, max_rms = tx.init(params), 0.0
  for _ in range(steps):
    params, state, loss = step(params, state)
    if name in ("adamw", "stable_adamw"):
      max_rms = max(max_rms, max(float(r) for r in jax.tree.leaves(optim.last_rms(state))))
  return float(loss), max_rms


def main():
  print("MLP width 256 (base width 64), lr 3e-2 (SGD 0.5), 10 warmup steps, 300 steps, b2 0.99")
  print(f"{'optimizer':<14}{'parametrization':<17}{'final loss':>11}{'max RMS_t':>11}{'s':>6}")
  for name in ("adamw", "stable_adamw", "adam_atan2", "sgd"):
    for parametrization in ("sp", "mup"):
      t = time.time()
      loss, rms = train(name, parametrization, lr=0.5 if name == "sgd" else 3e-2)
      rms_text = f"{rms:11.2f}" if rms else f"{'-':>11}"
      print(f"{name:<14}{parametrization:<17}{loss:11.4f}{rms_text}{time.time() - t:6.1f}")
