"""Trainer overhead: `adamlab train` steps/s against a minimal hand-written jit loop.

    python benchmarks/trainer_overhead.py [--short 20 --long 220 --repeats 2]

Same model (GPT, muP, width 128), optimizer (StableAdamW), batches (the GCIDE source)
and device placement, in one process. Each side is run end to end for a short and a long
number of steps; the difference divided by the extra steps is the steady-state step
time, free of set-up and compilation. Both wall time and process CPU time are reported
(CPU time is steadier on a shared machine). Ratio = baseline / trainer step time.
"""

import argparse
import sys
import tempfile
import time

import jax
import optax

from adamlab import data, models, optim
from adamlab.config import base
from adamlab.train import run
from common import machine


def config(steps: int):
  c = base("gpt")
  c.parametrization = "mup"
  c.model.update(dict(width=128, base_width=64, depth=2, num_heads=4, seq_len=128))
  c.optimizer.update(dict(name="stable_adamw", learning_rate=3e-3, warmup_steps=10))
  c.update(dict(steps=steps, batch_size=32, log_every=10, eval_every=steps, eval_batches=0,
                checkpoint_every=10 * steps))
  return c


def baseline(c):
  """The loop anyone would write: build, jit with donation, fetch batch, step."""
  model, _ = models.build(c, jax.random.PRNGKey(c.seed))
  apply, params = models.functional(model)
  tx = optim.build(c, params, models.param_shapes(c, c.model.base_width))
  loss_fn = models.objective(c, apply)
  source = data.Source(c)

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
    run(c, workdir, log=lambda *_: None)


def timed(fn, c):
  wall, cpu = time.perf_counter(), time.process_time()
  fn(c)
  return time.perf_counter() - wall, time.process_time() - cpu


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--short", type=int, default=20)
  parser.add_argument("--long", type=int, default=220)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  per_step = {"baseline": [], "trainer": []}
  for _ in range(args.repeats):
    for name, fn in (("baseline", baseline), ("trainer", trainer)):
      short, long = timed(fn, config(args.short)), timed(fn, config(args.long))
      extra = args.long - args.short
      per_step[name].append(((long[0] - short[0]) / extra, (long[1] - short[1]) / extra))
  best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in per_step.items()}
  print(f"Trainer overhead, GPT width 128 depth 2 seq 128 batch 32, {machine()}")
  for name, (wall, cpu) in best.items():
    print(f"  {name:<9} step time {1e3 * wall:.1f} ms wall, {1e3 * cpu:.1f} ms CPU")
  print(f"  trainer steps/s relative to the baseline: "
        f"{best['baseline'][0] / best['trainer'][0]:.3f} (wall), "
        f"{best['baseline'][1] / best['trainer'][1]:.3f} (CPU time)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
