"""Trainer overhead: `adamlab train` steps/s against a minimal hand-written jit loop.

    python benchmarks/trainer_overhead.py [--short 20 --long 220 --repeats 2]

Same model (GPT, muP, width 128), optimizer (StableAdamW), batches (the GCIDE source)
and device placement, in one process. Each side is run end to end for a short and a long
number of steps; the difference divided by the extra steps is the steady-state step
time, free of set-up and compilation. Both wall time and process CPU time are reported
(CPU time is steadier on a shared machine). Ratio = baseline / trainer step time.
"""

import argparse
import statistics
import sys
import tempfile
import time

import jax
import optax

from adamlab import data, models
from adamlab.train.config import base
from adamlab.train import optimizer, run as train_run
from common import machine


def config(steps: int):
  c = base("gpt")
  c.parametrization = "mup"
  c.model.update(dict(width=128, base_width=64, depth=2, num_heads=4, seq_len=128))
  c.optimizer.update(dict(name="stable_adamw", learning_rate=3e-3, warmup_steps=10))
  c.update(
    dict(
      steps=steps,
      batch_size=32,
      log_every=10,
      eval_every=steps,
      eval_batches=0,
      checkpoint_every=10 * steps,
    )
  )
  return c


def baseline(c):
  """The loop anyone would write: build, jit with donation, fetch batch, step."""
  model, table = optimizer.build_model(c, jax.random.PRNGKey(c.seed))
  apply, params = models.functional(model)
  tx = optimizer.build(c.optimizer, table, params)
  loss_fn = models.task(c.model).objective(apply)
  source = data.source(c)

  def step(params, opt_state, x, y):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, donate_argnums=(0, 1))
  opt_state = tx.init(params)
  for s in range(c.steps):
    x, y = source.batch(s)
    params, opt_state, loss = step(params, opt_state, jax.device_put(x), jax.device_put(y))
  jax.block_until_ready(loss)


def trainer(c):
  with tempfile.TemporaryDirectory() as workdir:
    train_run(c, workdir, log=lambda *_: None)


def timed(fn, c):
  wall, cpu = time.perf_counter(), time.process_time()
  fn(c)
  return time.perf_counter() - wall, time.process_time() - cpu


def run(short=20, long=220, repeats=2):
  """Per-step wall and CPU seconds of each side, min and median over repeats."""
  per_step = {"baseline": [], "trainer": []}
  sides = [("baseline", baseline), ("trainer", trainer)]
  for r in range(repeats):
    for name, fn in sides[::-1] if r % 2 else sides:  # alternate who goes first
      a, b = timed(fn, config(short)), timed(fn, config(long))
      extra = long - short
      per_step[name].append(((b[0] - a[0]) / extra, (b[1] - a[1]) / extra))
  result = {
    "machine": machine(),
    "short": short,
    "long": long,
    "repeats": repeats,
    "per_step": per_step,
  }
  for i, clock in enumerate(("wall", "cpu")):
    for stat, f in (("min", min), ("median", statistics.median)):
      t = {k: f(v[i] for v in runs) for k, runs in per_step.items()}
      result[f"{clock}_{stat}_s"] = t
      # steps/s relative to the baseline: baseline step time / trainer step time
      result[f"ratio_{clock}_{stat}"] = t["baseline"] / t["trainer"]
  return result


def report(result, target=None) -> str:
  lines = [
    f"Trainer overhead, GPT width 128 depth 2 seq 128 batch 32, {result['machine']}; "
    f"steady-state step time from runs of {result['short']} and {result['long']} "
    f"steps, {result['repeats']} repeat(s)",
    "",
    "| clock | baseline ms (min / median) | trainer ms (min / median) | "
    "trainer steps/s vs baseline (min / median) |" + (" target |" if target else ""),
    "|---|---|---|---|" + ("---|" if target else ""),
  ]
  for clock in ("wall", "cpu"):
    mn, md = result[f"{clock}_min_s"], result[f"{clock}_median_s"]
    r_min, r_med = result[f"ratio_{clock}_min"], result[f"ratio_{clock}_median"]
    row = (
      f"| {'wall' if clock == 'wall' else 'CPU time'} | {1e3 * mn['baseline']:.1f} / "
      f"{1e3 * md['baseline']:.1f} | {1e3 * mn['trainer']:.1f} / {1e3 * md['trainer']:.1f}"
      f" | {r_min:.3f}x / {r_med:.3f}x |"
    )
    if target:
      row += f" >= {target:.2f}x: {'met' if r_min >= target else 'not met'} |"
    lines.append(row)
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--short", type=int, default=20)
  parser.add_argument("--long", type=int, default=220)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  print(report(run(args.short, args.long, args.repeats)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
