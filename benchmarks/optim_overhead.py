"""Optimizer update time against optax.adamw on a transformer-shaped tree.

    python benchmarks/optim_overhead.py [--params 20e6] [--repeats 20]

Each optimizer's jitted update is timed interleaved with optax.adamw, in the same
process, two ways: the update alone, and the update applied to the params as a training
step does it. The ratios are what to read.
"""

import argparse
import json
import random
import statistics
import sys

import jax
import jax.numpy as jnp
import optax

from adamlab import optim
from common import machine, time_fn


def transformer_shapes(n_params: float, vocab: int = 8192, d: int = 512):
  """Embedding, per layer qkv/out/mlp matrices and two norms, readout; ~n_params."""
  per_layer = d * 3 * d + d * d + 2 * d * 4 * d + 4 * d
  layers = max(1, round((n_params - 2 * vocab * d) / per_layer))
  tree = {"embed": (vocab, d), "readout": (d, vocab), "final_norm": (d,)}
  for i in range(layers):
    tree[f"layer{i}"] = {
      "qkv": (d, 3 * d),
      "out": (d, d),
      "mlp_in": (d, 4 * d),
      "mlp_out": (4 * d, d),
      "norm1": (d,),
      "norm2": (d,),
    }
  return jax.tree.map(
    lambda s: jnp.zeros(s, jnp.float32), tree, is_leaf=lambda x: isinstance(x, tuple)
  )


def candidates(params):
  # The same tree at a quarter of the width: every 512-multiple dimension shrinks.
  base = jax.tree.map(
    lambda p: jnp.zeros(tuple(s // 4 if s % 512 == 0 and s != 8192 else s for s in p.shape)), params
  )
  table = optim.parametrize(base=base, target=params, parametrization="mup")
  return {
    "optax.adamw": optax.adamw(1e-3, weight_decay=0.1),
    "stable_adamw": optim.stable_adamw(1e-3, weight_decay=0.1),
    "stable_adamw (no clip, RMS telemetry)": optim.stable_adamw(
      1e-3, weight_decay=0.1, clip_threshold=None
    ),
    "stable_adamw (no clip, no telemetry)": optim.stable_adamw(
      1e-3, weight_decay=0.1, clip_threshold=None, track_rms=False
    ),
    "adam_atan2": optim.adam_atan2(1e-3, weight_decay=0.1),
    "mup stable_adamw": optim.stable_adamw(1e-3, weight_decay=0.1, parametrization=table),
    "mup adam_atan2": optim.adam_atan2(1e-3, weight_decay=0.1, parametrization=table),
  }


def array_passes(step, args, count) -> float:
  """Bytes the compiled update reads and writes (XLA's cost analysis), in float32
  arrays the size of the params: a noise-free check on what the timings show."""
  cost = step.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if not cost or "bytes accessed" not in cost:  # a backend without cost analysis
    return float("nan")
  return cost["bytes accessed"] / (4 * count)


def harnesses(tx, params, grads, count):
  """{harness: (call, array passes)} for one optimizer.

  "update": tx.update alone, its state donated; the updates come out as a new tree.
  "step": tx.update then apply_updates, params and state donated: what a training step
  runs, where XLA fuses the update into the params' write and no update tree is made.
  """
  update = jax.jit(tx.update, donate_argnums=(1,))
  update_state = [tx.init(params)]

  def apply(g, s, p):
    u, s = tx.update(g, s, p)
    return s, optax.apply_updates(p, u)

  step = jax.jit(apply, donate_argnums=(1, 2))
  step_state = [tx.init(params), jax.tree.map(jnp.copy, params)]  # [opt state, params]

  def call_update():
    u, update_state[0] = update(grads, update_state[0], params)
    return u

  def call_step():
    step_state[:] = step(grads, *step_state)
    return step_state

  return {
    "update": (call_update, array_passes(update, (grads, update_state[0], params), count)),
    "step": (call_step, array_passes(step, (grads, *step_state), count)),
  }


def run(n_params=20e6, repeats=20, rounds=4):
  """rounds * repeats calls of every optimizer and harness, one call each in turn (in a
  shuffled order), so drift on a shared machine hits all alike. ratio_median is the median of
  the ratios of calls made side by side, ratio_min the ratio of the fastest calls."""
  params = transformer_shapes(n_params)
  count = sum(p.size for p in jax.tree.leaves(params))
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(p.size), p.shape), params)
  calls, passes = {}, {}
  for name, tx in candidates(params).items():
    for harness, (call, n) in harnesses(tx, params, grads, count).items():
      calls[name, harness], passes[name, harness] = call, n
  times = {k: [] for k in calls}
  for _ in range(2):  # warm up
    for call in calls.values():
      jax.block_until_ready(call())
  order, shuffle = list(calls), random.Random(0).shuffle
  for _ in range(rounds * repeats):
    shuffle(order)  # no optimizer always runs right after the same one
    for key in order:
      times[key].append(time_fn(calls[key], repeats=1, warmup=0)[0])
  rows = []
  for (name, harness), t in times.items():
    base = times["optax.adamw", harness]
    rows.append(
      {
        "optimizer": name,
        "harness": harness,
        "min_s": min(t),
        "median_s": statistics.median(t),
        "ratio_min": min(t) / min(base),
        "ratio_median": statistics.median(a / b for a, b in zip(t, base)),
        "array_passes": passes[name, harness],
      }
    )
  return {"params": count, "machine": machine(), "rows": rows}


def report(result, target=None) -> str:
  """target: the largest ratio allowed; adds a column judging each ratio against it, on
  the median of side-by-side ratios (the min of a noisy baseline can be a lucky call)."""
  lines = [
    f"Optimizer update vs optax.adamw, {result['params'] / 1e6:.1f}M params, {result['machine']}.",
    "",
    "update: `tx.update` alone (state donated). step: `tx.update` + `apply_updates` "
    "(params and state donated), as in a training step.",
    "",
    "| optimizer | harness | min ms | median ms | ratio (min) | ratio (median, paired) | "
    "array passes |" + (" target |" if target else ""),
    "|---|---|---|---|---|---|---|" + ("---|" if target else ""),
  ]
  for r in sorted(result["rows"], key=lambda r: r.get("harness", "update") != "update"):
    row = (
      f"| {r['optimizer']} | {r.get('harness', 'update')} | {1e3 * r['min_s']:.2f} | "
      f"{1e3 * r['median_s']:.2f} | {r['ratio_min']:.2f}x | {r['ratio_median']:.2f}x | "
      f"{r['array_passes']:.2f} |"
    )
    if target:
      met = "met" if r["ratio_median"] <= target else "not met"
      row += " (baseline) |" if r["optimizer"] == "optax.adamw" else f" <= {target:.2f}x: {met} |"
    lines.append(row)
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  parser.add_argument("--params", type=float, default=20e6)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  result = run(args.params, args.repeats, args.rounds)
  print(report(result))
  if args.json:
    json.dump(result, open(args.json, "w"), indent=1)
  sys.exit(0)
