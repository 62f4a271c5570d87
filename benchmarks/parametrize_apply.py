"""parametrize(apply=) on the shapes of a 7B-sized Llama: how long reading the forward takes.

    python benchmarks/parametrize_apply.py [--repeats 3]

The model: d 4096, 32 layers, 32 query heads and 8 key/value heads of head_dim 128,
SwiGLU of Llama's rounded size 11008, vocabulary 32000, an untied (vocab, d) head;
its base is d 256 (head_dim 8, feed-forward 768). Everything is ShapeDtypeStructs:
the trace holds no weights and computes nothing. Three calls in one process:

- scanned: the blocks stacked (32, ...) and run by one lax.scan;
- unrolled: 32 separate blocks in a Python loop (32 times the equations to read);
- shapes only: the unrolled tree without apply (the shape rule), the baseline.

Prints seconds (the first call, then min and median over repeats) and each as a ratio to the baseline.
"""

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp

from adamlab import optim

LAYERS, HEADS, KV, VOCAB, MULTIPLE_OF = 32, 32, 8, 32000, 256
TOKENS = jnp.zeros((1, 8), jnp.int32)


def ffn(d):
  return MULTIPLE_OF * math.ceil(8 * d / 3 / MULTIPLE_OF)


def layer_shapes(d, stack=()):
  hd, s = d // HEADS, lambda *shape: jax.ShapeDtypeStruct(stack + shape, jnp.float32)
  return dict(
    attn_norm=s(d),
    wq=s(d, HEADS, hd),
    wk=s(d, KV, hd),
    wv=s(d, KV, hd),
    wo=s(HEADS, hd, d),
    mlp_norm=s(d),
    w1=s(d, ffn(d)),
    w3=s(d, ffn(d)),
    w2=s(ffn(d), d),
  )


def shapes(d, scanned):
  s = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  blocks = layer_shapes(d, (LAYERS,)) if scanned else [layer_shapes(d) for _ in range(LAYERS)]
  return dict(embed=s(VOCAB, d), blocks=blocks, final_norm=s(d), head=s(VOCAB, d))


def norm(x, g):
  return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * g


def block(h, p):
  x = norm(h, p["attn_norm"])
  q = jnp.einsum("btd,dnh->btnh", x, p["wq"])
  k, v = (jnp.einsum("btd,dkh->btkh", x, p[w]) for w in ("wk", "wv"))
  k, v = (jnp.repeat(a, HEADS // KV, axis=2) for a in (k, v))
  y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
  h = h + jnp.einsum("btnh,nhd->btd", y, p["wo"])
  x = norm(h, p["mlp_norm"])
  return h + (jax.nn.silu(x @ p["w1"]) * (x @ p["w3"])) @ p["w2"]


def forward(p):
  h = jnp.take(p["embed"], TOKENS, axis=0)
  if isinstance(p["blocks"], dict):
    h = jax.lax.scan(lambda h, q: (block(h, q), None), h, p["blocks"])[0]
  else:
    for q in p["blocks"]:
      h = block(h, q)
  return norm(h, p["final_norm"]) @ p["head"].T


def seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return times[0], min(times), statistics.median(times)


def run(repeats=3):
  calls = {
    "shapes only (unrolled, no apply)": lambda: optim.parametrize(
      base=shapes(256, False), target=shapes(4096, False)
    ),
    "apply, scanned": lambda: optim.parametrize(
      base=shapes(256, True), target=shapes(4096, True), apply=forward
    ),
    "apply, unrolled": lambda: optim.parametrize(
      base=shapes(256, False), target=shapes(4096, False), apply=forward
    ),
  }
  return {name: seconds(fn, repeats) for name, fn in calls.items()}


def report(result) -> str:
  base = next(iter(result.values()))[1]
  lines = [
    "| call | first s | min s | median s | ratio (min) to shapes only |",
    "|---|---|---|---|---|",
  ]
  for name, (first, lo, med) in result.items():
    lines.append(f"| {name} | {first:.3f} | {lo:.3f} | {med:.3f} | {lo / base:.1f}x |")
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  print(report(run(parser.parse_args().repeats)))
