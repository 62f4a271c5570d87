"""Trainer overhead: the host work per step of `adamlab train`'s loop against a plain loop.

    python benchmarks/trainer_overhead.py [--widths 32,128,512 --chunks 30 --repeats 3]

Both sides train the same model (GPT, muP, depth 2, seq 128, batch 8), optimizer
(StableAdamW) and batches (the GCIDE source) on the same devices, in one process,
and both fetch their metrics every `log_every` (10) steps, as any loop that logs must.
The trainer side is the trainer's own `setup` and `loop`; the plain side is the loop
anyone would write (jit with donation, fetch a batch, step, fetch the loss every 10
steps).

Both are timed in steady state, after compilation and a warm-up: each step call is
time-stamped, and a chunk is the wall time between the calls that follow two
consecutive metric fetches, so it holds `log_every` whole steps and everything the
loop does between them. Per side: the median chunk over all chunks of all repeats,
divided by log_every. Host overhead per step = trainer - plain, in microseconds.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

import jax
import optax

from adamlab import data, models
from adamlab.train import optimizer, train
from adamlab.train.checks import check_config_mesh_and_data
from adamlab.train.config import base
from adamlab.train.preemption import signals
from common import machine

LOG_EVERY, WARM_CHUNKS = 10, 3


def config(width: int, steps: int):
  c = base("gpt")
  c.parametrization = "mup"
  c.model.update(dict(width=width, base_width=32, depth=2, num_heads=4, seq_len=128))
  c.optimizer.update(dict(name="stable_adamw", learning_rate=3e-3, warmup_steps=10))
  c.update(
    dict(
      steps=steps,
      batch_size=8,
      log_every=LOG_EVERY,
      eval_every=steps,
      eval_batches=0,
      checkpoint_every=10 * steps,
    )
  )
  return c


def plain(c):
  """(time stamps of each step call, seconds per step of the step alone) of the loop
  anyone would write."""
  apply, params, table = optimizer.build_params(c, jax.random.PRNGKey(c.seed))
  tx = optimizer.build(c.optimizer, table, params)
  loss_fn = models.task(c.model).objective(apply)
  source = data.source(c)

  def step(params, opt_state, x, y):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, donate_argnums=(0, 1))
  opt_state, stamps = tx.init(params), []
  for s in range(c.steps):
    x, y = source.batch(s)
    stamps.append(time.perf_counter())
    params, opt_state, loss = step(params, opt_state, jax.device_put(x), jax.device_put(y))
    if (s + 1) % LOG_EVERY == 0:
      jax.device_get(loss)
  return stamps, _alone(lambda st: step(*st, x, y)[:2], (params, opt_state))


def trainer(c):
  """(time stamps of each step call, seconds per step of the step alone) of the
  trainer's own setup and loop."""
  stamps, last = [], []

  def stamped(step):
    def call(*args):
      stamps.append(time.perf_counter())
      out = step(*args)
      last[:] = [out[0]]
      return out

    return call

  with tempfile.TemporaryDirectory() as workdir, signals() as preemption:
    mesh, task, source = check_config_mesh_and_data(c)
    runs = train.open_runs([c], [workdir])
    s, state = train.setup([c], mesh, task, source)
    quiet = lambda *_: None
    state = train.restore_and_open_writers(s, runs, state, quiet)
    step = s.train_step
    s = s._replace(train_step=stamped(step))
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):  # progress line
      train.loop(s, runs, state, preemption, quiet)
    for r in runs:
      r.ckpt.wait_until_finished()
      r.ckpt.close()
      r.writer.close()
    x, y = (s.put(a) for a in source.batch(0, s.rows))
    return stamps, _alone(lambda st: step(st, x, y)[0], last[0])


def _alone(step, state, n=5 * LOG_EVERY) -> float:
  """Seconds per step of `step` called back to back on one batch, fetched once at the
  end: the step's own time, with no loop around it."""
  state = step(state)  # (warm)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(n):
    state = step(state)
  jax.block_until_ready(state)
  return (time.perf_counter() - t) / n


def chunks(stamps: list, n: int) -> list:
  """Seconds of each of the n chunks after the warm-up (stamps[i]: call of step i + 1)."""
  first = WARM_CHUNKS * LOG_EVERY
  return [stamps[first + (i + 1) * LOG_EVERY] - stamps[first + i * LOG_EVERY] for i in range(n)]


def run(widths=(32, 128, 512), n_chunks=30, repeats=3):
  """Per width: microseconds per step of each side (median chunk / log_every)."""
  result = {"machine": machine(), "log_every": LOG_EVERY, "repeats": repeats, "widths": {}}
  for width in widths:
    # One more chunk after the window, so the run's final checkpoint falls outside it.
    c = config(width, (WARM_CHUNKS + n_chunks + 1) * LOG_EVERY)
    times = {"plain": [], "trainer": []}
    alone = {"plain": [], "trainer": []}
    sides = [("plain", plain), ("trainer", trainer)]
    for r in range(repeats):
      for name, fn in sides[::-1] if r % 2 else sides:  # alternate who goes first
        stamps, seconds = fn(c)
        times[name] += chunks(stamps, n_chunks)
        alone[name].append(seconds)
    us = {k: 1e6 * statistics.median(v) / LOG_EVERY for k, v in times.items()}
    step_us = {k: 1e6 * statistics.median(v) for k, v in alone.items()}
    host_us = {k: us[k] - step_us[k] for k in us}
    result["widths"][str(width)] = dict(
      us_per_step=us,
      step_alone_us=step_us,
      host_us=host_us,  # the loop's time per step beyond its step's own
      overhead_us=us["trainer"] - us["plain"],
      ratio=us["plain"] / us["trainer"],  # steps/s of the trainer relative to plain
      spread_us={k: [1e6 * min(v) / LOG_EVERY, 1e6 * max(v) / LOG_EVERY] for k, v in times.items()},
    )
  return result


def report(result, target=None) -> str:
  lines = [
    f"Trainer overhead, GPT muP depth 2 seq 128 batch 8, StableAdamW, {result['machine']}; "
    f"steady state, median of chunks of {result['log_every']} steps over "
    f"{result['repeats']} repeat(s)",
    "",
    "| width | µs/step plain / trainer | of which the step alone | "
    "of which the loop around it | trainer steps/s vs plain |" + (" target |" if target else ""),
    "|---|---|---|---|---|" + ("---|" if target else ""),
  ]
  for width, w in result["widths"].items():
    us, step, host = w["us_per_step"], w["step_alone_us"], w["host_us"]
    row = (
      f"| {width} | {us['plain']:.0f} / {us['trainer']:.0f} | {step['plain']:.0f} / "
      f"{step['trainer']:.0f} | {host['plain']:.0f} / {host['trainer']:.0f} | "
      f"{w['ratio']:.3f}x |"
    )
    if target:
      row += f" >= {target:.2f}x: {'met' if w['ratio'] >= target else 'not met'} |"
    lines.append(row)
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--widths", default="32,128,512")
  parser.add_argument("--chunks", type=int, default=30)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  widths = [int(w) for w in args.widths.split(",")]
  print(report(run(widths, args.chunks, args.repeats), target=0.95))
  return 0


if __name__ == "__main__":
  sys.exit(main())
