"""Optimizer update time against optax.adamw on a transformer-shaped tree.

    python benchmarks/optim_overhead.py [--params 20e6] [--repeats 20]

Each optimizer's jitted update (updates + new state, buffers donated) is timed
interleaved with optax.adamw, in the same process; the ratios are what to read.
"""

import argparse
import json
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
    tree[f"layer{i}"] = {"qkv": (d, 3 * d), "out": (d, d), "mlp_in": (d, 4 * d),
                         "mlp_out": (4 * d, d), "norm1": (d,), "norm2": (d,)}
  return jax.tree.map(lambda s: jnp.zeros(s, jnp.float32), tree,
                      is_leaf=lambda x: isinstance(x, tuple))


def candidates(params):
  # The same tree at a quarter of the width: every 512-multiple dimension shrinks.
  base = jax.tree.map(lambda p: jnp.zeros(tuple(s // 4 if s % 512 == 0 and s != 8192 else s
                                                for s in p.shape)), params)
  table = optim.parametrize(base, params, "mup")
  return {
      "optax.adamw": optax.adamw(1e-3, weight_decay=0.1),
      "stable_adamw": optim.stable_adamw(1e-3, weight_decay=0.1),
      "stable_adamw (no clip, RMS telemetry)": optim.stable_adamw(1e-3, weight_decay=0.1,
                                                                  clip_threshold=None),
      "stable_adamw (no clip, no telemetry)": optim.stable_adamw(
          1e-3, weight_decay=0.1, clip_threshold=None, track_rms=False),
      "adam_atan2": optim.adam_atan2(1e-3, weight_decay=0.1),
      "mup stable_adamw": optim.stable_adamw(1e-3, weight_decay=0.1, parametrization=table),
      "mup adam_atan2": optim.adam_atan2(1e-3, weight_decay=0.1, parametrization=table),
  }


def array_passes(step, grads, state, params, count) -> float:
  """Bytes the compiled update reads and writes (XLA's cost analysis), in float32
  arrays the size of the params: a noise-free check on what the timings show."""
  cost = step.lower(grads, state, params).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  if not cost or "bytes accessed" not in cost:  # a backend without cost analysis
    return float("nan")
  return cost["bytes accessed"] / (4 * count)


def run(n_params=20e6, repeats=20, rounds=4):
  """Rounds of `repeats` calls per optimizer, interleaved so drift hits all alike."""
  params = transformer_shapes(n_params)
  count = sum(p.size for p in jax.tree.leaves(params))
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(p.size), p.shape), params)
  calls, passes = {}, {}
  for name, tx in candidates(params).items():
    step = jax.jit(tx.update, donate_argnums=(1,))
    state = [tx.init(params)]
    passes[name] = array_passes(step, grads, state[0], params, count)

    def call(g, p, step=step, state=state):
      u, state[0] = step(g, state[0], p)
      return u

    calls[name] = call
  mins = {k: [] for k in calls}
  medians = {k: [] for k in calls}
  for _ in range(rounds):
    for name, call in calls.items():
      mn, md = time_fn(call, grads, params, repeats=repeats)
      mins[name].append(mn)
      medians[name].append(md)
  times = {k: (min(mins[k]), statistics.median(medians[k])) for k in calls}
  base_min, base_med = times["optax.adamw"]
  rows = [{"optimizer": k, "min_s": v[0], "median_s": v[1], "ratio_min": v[0] / base_min,
           "ratio_median": v[1] / base_med, "array_passes": passes[k]}
          for k, v in times.items()]
  return {"params": count, "machine": machine(), "rows": rows}


def report(result, target=None) -> str:
  """target: the largest ratio allowed; adds a column judging each ratio (min) against it."""
  lines = [f"Optimizer update vs optax.adamw, {result['params'] / 1e6:.1f}M params, "
           f"{result['machine']}", "",
           "| optimizer | min ms | median ms | ratio (min) | ratio (median) | array passes |"
           + (" target |" if target else ""), "|---|---|---|---|---|---|" + ("---|" if target else "")]
  for r in result["rows"]:
    row = (f"| {r['optimizer']} | {1e3 * r['min_s']:.2f} | {1e3 * r['median_s']:.2f} | "
           f"{r['ratio_min']:.2f}x | {r['ratio_median']:.2f}x | {r['array_passes']:.2f} |")
    if target:
      met = "met" if r["ratio_min"] <= target else "not met"
      row += (" (baseline) |" if r["optimizer"] == "optax.adamw"
              else f" <= {target:.2f}x: {met} |")
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
