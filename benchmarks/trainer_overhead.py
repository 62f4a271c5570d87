"""Trainer overhead: `adamlab train` steps/s against a minimal hand-written jit loop.

    python benchmarks/trainer_overhead.py [--steps 200]

Same model (GPT, muP, width 128), optimizer (StableAdamW), batches (the GCIDE source)
and device placement, in one process. The trainer's step time is read from its own
metrics.jsonl (wall time per logging interval); the baseline is timed the same way:
per interval of `log_every` steps, after the first (compile) interval. Ratio =
baseline step time / trainer step time (1.0 = no overhead).
"""

import argparse
import json
import statistics
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


def baseline(c, steps: int, log_every: int):
  """The loop anyone would write: build, jit with donation, fetch batch, step."""
  model, _ = models.build(c, jax.random.PRNGKey(c.seed))
  apply, params = models.functional(model)
  tx = optim.build(c, params, models.param_shapes(c, c.model.base_width))
  loss_fn = models.objective(c, apply)
  source = data.Source(c)

  @jax.jit
  def step(params, opt_state, x, y):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step.__wrapped__, donate_argnums=(0, 1))
  opt_state = tx.init(params)
  times, t = [], time.time()
  for s in range(steps):
    x, y = source.batch(s)
    params, opt_state, loss = step(params, opt_state, jax.device_put(x), jax.device_put(y))
    if (s + 1) % log_every == 0:
      jax.block_until_ready(loss)
      times.append((time.time() - t) / log_every)
      t = time.time()
  return times[1:]


def trainer(c):
  with tempfile.TemporaryDirectory() as workdir:
    run(c, workdir, log=lambda *_: None)
    rows = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
  per_interval = [r["step_time_s"] for r in rows if r["step"] % c.log_every == 0]
  return per_interval[1:]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()
  c = config(args.steps)
  results = {}
  for name, fn in (("baseline", lambda: baseline(c, args.steps, c.log_every)),
                   ("trainer", lambda: trainer(c)), ("baseline again", lambda: baseline(
                       c, args.steps, c.log_every))):
    t = fn()
    results[name] = (min(t), statistics.median(t))
  base_min = min(results["baseline"][0], results["baseline again"][0])
  base_med = min(results["baseline"][1], results["baseline again"][1])
  tr_min, tr_med = results["trainer"]
  print(f"Trainer overhead, GPT width 128 depth 2 seq 128 batch 32, {machine()}")
  for name, (mn, md) in results.items():
    print(f"  {name:<15} step time min {1e3 * mn:.1f} ms, median {1e3 * md:.1f} ms")
  print(f"  ratio baseline/trainer (steps/s of the trainer relative to the baseline): "
        f"min {base_min / tr_min:.3f}, median {base_med / tr_med:.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
