"""muP on a Llama-style decoder stored as a stack of layers, the layout of MaxText,
levanter and nanodo: RMSNorm, SwiGLU with Llama's rounded hidden size, rotary
positions, grouped-query attention whose head_dim grows with width, and an untied
(vocab, d) head used as h @ W.T. The blocks run under one `lax.scan`.

Shapes alone would get this model wrong: the stacked norm gains (L, d) look like
matrices, the layer axis would count as fan-in, the (vocab, d) head looks like an
embedding and the k/v kernels (d, kv_heads, head_dim) could split either way.
`parametrize(apply=forward)` reads each parameter's use from the traced forward.

python examples/scanned_llama.py
"""

import math

import jax
import jax.numpy as jnp
import optax

from adamlab import optim

VOCAB, DEPTH, HEADS, KV_HEADS, SEQ, BASE_WIDTH, MULTIPLE_OF = 64, 2, 4, 2, 16, 64, 32


def ffn_size(width):
  """Llama's feed-forward size: 8d/3 rounded up to a multiple of MULTIPLE_OF."""
  return MULTIPLE_OF * math.ceil(8 * width / 3 / MULTIPLE_OF)


def shapes(width):
  """The params at `width`: every block's leaves stacked along a first layer axis."""
  hd, f, L = width // HEADS, ffn_size(width), DEPTH
  z = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
  blocks = dict(
    attn_norm=z(L, width),
    wq=z(L, width, HEADS, hd),
    wk=z(L, width, KV_HEADS, hd),
    wv=z(L, width, KV_HEADS, hd),
    wo=z(L, HEADS, hd, width),
    mlp_norm=z(L, width),
    w1=z(L, width, f),
    w3=z(L, width, f),
    w2=z(L, f, width),
  )
  return dict(embed=z(VOCAB, width), blocks=blocks, final_norm=z(width), head=z(VOCAB, width))


def ones_and_zeros(width):
  """Initial values as a user writes them: gains 1, matrices 0 (init_params draws them)."""
  gains = ("attn_norm", "mlp_norm", "final_norm")
  return jax.tree_util.tree_map_with_path(
    lambda p, s: (jnp.ones if p[-1].key in gains else jnp.zeros)(s.shape, s.dtype), shapes(width)
  )


def rms_norm(x, gain):
  return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * gain


def rotary(x):
  """Rotary positions on (batch, seq, heads, head_dim)."""
  half = x.shape[-1] // 2
  freq = 10000.0 ** (-jnp.arange(half) / half)
  angle = jnp.arange(x.shape[1])[:, None] * freq[None, :]
  sin, cos = jnp.sin(angle)[None, :, None], jnp.cos(angle)[None, :, None]
  x1, x2 = x[..., :half], x[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def block(h, p, scale):
  x = rms_norm(h, p["attn_norm"])
  q = rotary(jnp.einsum("btd,dnh->btnh", x, p["wq"]))
  k = rotary(jnp.einsum("btd,dkh->btkh", x, p["wk"]))
  v = jnp.einsum("btd,dkh->btkh", x, p["wv"])
  k, v = (jnp.repeat(a, HEADS // KV_HEADS, axis=2) for a in (k, v))  # grouped queries
  y = jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True)
  h = h + jnp.einsum("btnh,nhd->btd", y, p["wo"])
  x = rms_norm(h, p["mlp_norm"])
  return h + (jax.nn.silu(x @ p["w1"]) * (x @ p["w3"])) @ p["w2"]


def forward(params, tokens, parametrization="mup"):
  """Logits (batch, seq, vocab). Under muP the attention logits are q.k / head_dim
  (times a constant that makes it 1/sqrt(head_dim) at the base width): with feature
  learning q and k correlate and q.k grows like head_dim (Tensor Programs V)."""
  hd, base_hd = params["blocks"]["wq"].shape[-1], BASE_WIDTH // HEADS
  scale = base_hd**-0.5 * base_hd / hd if parametrization == "mup" else hd**-0.5
  h = jnp.take(params["embed"], tokens, axis=0)
  h, _ = jax.lax.scan(lambda h, p: (block(h, p, scale), None), h, params["blocks"])
  return rms_norm(h, params["final_norm"]) @ params["head"].T


def batch():
  tokens = jax.random.randint(jax.random.PRNGKey(1), (8, SEQ + 1), 0, VOCAB)
  return tokens[:, :-1], tokens[:, 1:]


def setup(width, parametrization="mup", lr=1e-2, seed=0):
  """(forward, loss, params, tx) at `width`, as `optim.coord_check` takes them."""
  inputs, targets = batch()
  apply = lambda p: forward(p, inputs, parametrization)
  table = optim.parametrize(
    base=shapes(BASE_WIDTH),
    target=shapes(width),
    apply=apply,
    parametrization=parametrization,
    per_layer_lr=parametrization != "sp",
    allow_narrower=True,
  )
  params = optim.init_params(table, ones_and_zeros(width), jax.random.PRNGKey(seed))
  model = lambda p: apply(optim.apply_multipliers(table, p))
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(model(p), targets).mean()
  return model, loss, params, optim.adamw(lr, weight_decay=0.0, parametrization=table)


def coordinate_check(parametrization="mup", widths=(64, 128, 256), steps=3):
  """{layer: slope of log2 RMS of its output against log2 width} after `steps` steps."""
  return optim.coord_check(lambda w: setup(w, parametrization), widths, steps).slopes


if __name__ == "__main__":
  for parametrization in ("mup", "sp"):
    slopes = coordinate_check(parametrization)
    print(f"{parametrization:4s}", "  ".join(f"{k} {v:+.2f}" for k, v in slopes.items()))
