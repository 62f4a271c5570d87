"""Train what does not fit: memory, step time and compile time of model.remat and
model.scan_layers, beside seed 003's activation-memory formulas.

    python benchmarks/memory.py [--quick] [--shapes 4x64x128,8x64x128,4x64x256]

Memory is XLA's own account of the compiled train step (`memory_analysis()`): its
temporary buffers grow with the batch by the activations kept for the backward pass,
so the activation bytes per sequence are (temp(2B) - temp(B)) / B. Beside them: what
JAX's autodiff saves before XLA fuses and schedules (`print_saved_residuals`, arguments
left out, same difference), and seed 003's count of values per sequence
(d: width, T: context, L: blocks, h: heads, V: vocabulary):

  none          12 L d T + L h T^2 + 2 V T   "memory created in the graph"
  block         L d T + 12 d T + h T^2       option 1: block inputs + one block recomputed
  no_attention  12 L d T                     option 2: all but the T x T matrices

The seed counts values; the model computes in float32 here, 4 bytes each. Options 1
and 2 leave out "the V part"; the formulas here add it back (2 V T: logits and their
softmax), as the measured figures hold it. Step time is each mode's against remat
none, and compile time is the time to the first step (lower, compile, first call),
scan against unrolled; both in this process, on the GPT's train step with AdamW.

Last, the setup's own memory (`setup_memory.py`): the peak bytes per device while the
params and optimizer state are made, against P / n, on 1, 2 and 8 simulated devices.
"""

import argparse
import contextlib
import io
import os
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import print_saved_residuals
import numpy as np

from adamlab import models
from adamlab.train import optimizer
from adamlab.train.config import base
from adamlab.train.step import initial_state, make_train_step
from common import machine
import setup_memory

# Sizes of `--quick` (and of benchmarks/run.py --quick).
QUICK = dict(depths=(4, 16), rounds=2)
MODES = [(remat, scan) for scan in (False, True) for remat in ("none", "block", "no_attention")]
HEADS, VOCAB, BYTES = 4, 256, 4  # float32


def config(depth, width, seq_len, remat="none", scan=False):
  c = base("gpt")
  c.model.update(
    dict(
      depth=depth,
      width=width,
      base_width=width,
      num_heads=HEADS,
      vocab_size=VOCAB,
      seq_len=seq_len,
      remat=remat,
      scan_layers=scan,
    )
  )
  c.optimizer.update(dict(name="adamw", warmup_steps=0))
  return c


def train_step(c):
  """(jitted step with the state donated, state, objective, params) of config c."""
  key = jax.random.PRNGKey(0)
  model, table = optimizer.build_model(c, key)
  apply, params = models.functional(model)
  tx = optimizer.build(c.optimizer, table, params)
  objective = models.task(c.model).objective(apply)
  step = jax.jit(make_train_step(objective, tx), donate_argnums=0)
  return step, initial_state(params, tx.init(params), jax.random.key_data(key)), objective, params


def tokens(c, batch):
  return jnp.zeros((batch, c.model.seq_len), jnp.int32)


def formula(depth, width, seq_len, remat) -> float:
  """Seed 003's activation values per sequence (with the V part; see the docstring)."""
  d, t, h, v = width, seq_len, HEADS, VOCAB
  graph = {
    "none": 12 * depth * d * t + depth * h * t * t,
    "block": depth * d * t + 12 * d * t + h * t * t,
    "no_attention": 12 * depth * d * t,
  }[remat]
  return graph + 2 * v * t


def residual_bytes(objective, params, x) -> int:
  """Bytes autodiff saves for the backward pass, the function's arguments left out."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    print_saved_residuals(lambda p: objective(p, x, x)[0], params)
  total = 0
  for line in out.getvalue().splitlines():
    found = re.match(r"(\w+)\[([\d,]*)\]", line)
    if found and "from the argument" not in line:
      shape = [int(n) for n in found.group(2).split(",") if n]
      total += int(np.prod(shape)) * itemsize(found.group(1))
  return total


def itemsize(short: str) -> int:
  """Bytes of an element from JAX's short dtype name (f32, bf16, i32, bool)."""
  bits = re.search(r"\d+", short)
  return int(bits.group()) // 8 if bits else 1


# XLA's memory figures come from its HLO passes and buffer assignment, before the LLVM
# back end: without the back end's optimizations they are the same, in half the time.
MEMORY_ONLY = {"xla_backend_optimization_level": 0}


def measure_shape(depth, width, seq_len, batch, timed=False):
  """One row per mode: XLA's and JAX's activation bytes per sequence, and the formula's.
  timed: also return each mode's step at 2 * batch, fully optimized, for step_times."""
  rows, compiled = [], {}
  for remat, scan in MODES:
    c = config(depth, width, seq_len, remat, scan)
    step, state, objective, params = train_step(c)
    abstract = jax.eval_shape(lambda: state)
    temp, saved = [], []
    for b in (batch, 2 * batch):
      x = tokens(c, b)
      fast = not (timed and b == 2 * batch)
      comp = step.lower(abstract, x, x).compile(compiler_options=MEMORY_ONLY if fast else None)
      stats = comp.memory_analysis()
      temp.append(stats.temp_size_in_bytes)
      saved.append(residual_bytes(objective, params, x))
    if timed:
      compiled[(remat, scan)] = (comp, state, x)
    rows.append(
      dict(
        depth=depth,
        width=width,
        seq_len=seq_len,
        remat=remat,
        scan=scan,
        batch=2 * batch,
        temp=stats.temp_size_in_bytes,
        arguments=stats.argument_size_in_bytes,
        outputs=stats.output_size_in_bytes,
        aliased=stats.alias_size_in_bytes,
        xla_per_seq=(temp[1] - temp[0]) / batch,
        jax_per_seq=(saved[1] - saved[0]) / batch,
        formula_per_seq=BYTES * formula(depth, width, seq_len, remat),
      )
    )
  return rows, compiled


def step_times(compiled, rounds, calls):
  """Median over rounds of each mode's step time over remat none's (same scan),
  the modes timed one after another within a round."""
  state = {k: jax.tree.map(jnp.copy, s) for k, (_, s, _) in compiled.items()}
  per_round = {k: [] for k in compiled}
  for r in range(rounds + 1):  # round 0 warms up
    for k, (comp, _, x) in compiled.items():
      t = time.perf_counter()
      for _ in range(calls):
        state[k], metrics = comp(state[k], x, x)
      jax.block_until_ready(metrics)
      if r:
        per_round[k].append((time.perf_counter() - t) / calls)
  return {
    k: dict(
      ms=1e3 * statistics.median(v),
      ratio=statistics.median([a / b for a, b in zip(v, per_round[("none", k[1])])]),
    )
    for k, v in per_round.items()
  }


def time_to_first_step(depth, width, seq_len, batch, scan):
  """Seconds of lower + compile + first call of a fresh train step."""
  c = config(depth, width, seq_len, scan=scan)
  step, state, _, _ = train_step(c)
  x = tokens(c, batch)
  t = time.perf_counter()
  comp = step.lower(state, x, x).compile()
  jax.block_until_ready(comp(state, x, x))
  return time.perf_counter() - t


def run(
  shapes=((4, 64, 128), (8, 64, 128)),
  batch=4,
  rounds=3,
  calls=3,
  depths=(4, 16, 32),
  compile_shape=(64, 64, 4),
  setup_devices=(1, 2, 8),
  setup_width=256,
):
  """Memory rows for every (L, d, T) in shapes and every mode; step-time ratios at the
  first shape (batch 2 * batch); time to the first step, unrolled and scanned, at each
  depth (the unrolled depth-32 step is the longest compile); and the setup's peak bytes
  per device on each number of simulated devices (`setup_memory.py`)."""
  memory, times = [], {}
  for i, shape in enumerate(shapes):
    rows, compiled = measure_shape(*shape, batch, timed=i == 0)
    memory += rows
    if compiled:
      times = {f"{r}, scan {s}": v for (r, s), v in step_times(compiled, rounds, calls).items()}
  compile_s = [
    dict(
      depth=L,
      unrolled=time_to_first_step(L, *compile_shape, scan=False),
      scanned=time_to_first_step(L, *compile_shape, scan=True),
    )
    for L in depths
  ]
  return dict(
    machine=machine(),
    xla_flags=os.environ.get("XLA_FLAGS", ""),
    shapes=[list(s) for s in shapes],
    batch=batch,
    memory=memory,
    step_time=times,
    rounds=rounds,
    calls=calls,
    compile=compile_s,
    compile_shape=list(compile_shape),
    setup=[setup_memory.measure(n, setup_width) for n in setup_devices],
  )


def per_block(memory):
  """Per block per sequence, from the difference of two depths at one (d, T): the L-terms."""
  by = {(r["depth"], r["width"], r["seq_len"], r["remat"], r["scan"]): r for r in memory}
  out = []
  for (L, d, t, remat, scan), r in by.items():
    deeper = [k for k in by if k[1:] == (d, t, remat, scan) and k[0] > L]
    if deeper:
      s = by[min(deeper)]
      dl = s["depth"] - L
      out.append(
        dict(
          width=d,
          seq_len=t,
          remat=remat,
          scan=scan,
          depths=(L, s["depth"]),
          xla=(s["xla_per_seq"] - r["xla_per_seq"]) / dl,
          jax=(s["jax_per_seq"] - r["jax_per_seq"]) / dl,
          formula=(s["formula_per_seq"] - r["formula_per_seq"]) / dl,
        )
      )
  return out


def kib(n) -> str:
  return f"{n / 1024:.0f}"


def report(result) -> str:
  b = 2 * result["batch"]
  flags = f" XLA_FLAGS={result['xla_flags']}." if result.get("xla_flags") else ""
  lines = [
    f"GPT train step (AdamW, float32, {HEADS} heads, vocab {VOCAB}), {result['machine']}. "
    f"Activations per sequence in KiB: XLA's temp(B={b}) - temp(B={result['batch']}) "
    f"over {result['batch']}; JAX: autodiff's saved residuals (same difference); "
    "formula: seed 003's values x 4 bytes. temp, arguments and outputs: XLA's "
    f"buffers at B = {b}, in MiB.{flags}",
    "",
    "| L | d | T | remat | scan | XLA | JAX | formula | XLA / formula | "
    "JAX / formula | temp | arguments | outputs |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["memory"]:
    lines.append(
      f"| {r['depth']} | {r['width']} | {r['seq_len']} | {r['remat']} | {r['scan']} | "
      f"{kib(r['xla_per_seq'])} | {kib(r['jax_per_seq'])} | {kib(r['formula_per_seq'])} | "
      f"{r['xla_per_seq'] / r['formula_per_seq']:.2f} | "
      f"{r['jax_per_seq'] / r['formula_per_seq']:.2f} | {r['temp'] / 2**20:.1f} | "
      f"{r['arguments'] / 2**20:.1f} | {r['outputs'] / 2**20:.1f} |"
    )
  lines += [
    "",
    "Per block (difference of the two depths), KiB per sequence:",
    "",
    "| d | T | remat | scan | XLA | JAX | formula | XLA / formula |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in per_block(result["memory"]):
    lines.append(
      f"| {r['width']} | {r['seq_len']} | {r['remat']} | {r['scan']} | "
      f"{kib(r['xla'])} | {kib(r['jax'])} | {kib(r['formula'])} | "
      f"{r['xla'] / r['formula']:.2f} |"
    )
  L, d, t = result["shapes"][0]
  lines += [
    "",
    f"Step time at L={L} d={d} T={t} B={b} (median of {result['rounds']} rounds "
    f"of {result['calls']} calls, ratio against remat none with the same scan):",
    "",
    "| mode | ms | vs none |",
    "|---|---|---|",
  ]
  lines += [f"| {k} | {v['ms']:.1f} | {v['ratio']:.2f}x |" for k, v in result["step_time"].items()]
  d, t, b = result["compile_shape"]
  lines += [
    "",
    f"Time to the first step (lower + compile + first call), d={d} T={t} B={b}:",
    "",
    "| depth | unrolled s | scan s | unrolled / scan |",
    "|---|---|---|---|",
  ]
  lines += [
    f"| {r['depth']} | {r['unrolled']:.1f} | {r['scanned']:.1f} | "
    f"{r['unrolled'] / r['scanned']:.1f}x |"
    for r in result["compile"]
  ]
  if "setup" in result:  # (a report.json from before the section)
    lines += ["", setup_memory.TITLE, "", setup_memory.report(result["setup"])]
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="depths 4 and 16, 2 rounds")
  parser.add_argument(
    "--shapes",
    default="4x64x128,8x64x128",
    help="comma-separated LxDxT: depth, width, context of each GPT",
  )
  args = parser.parse_args()
  shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
  print(report(run(**dict(QUICK if args.quick else {}, shapes=shapes))))
  return 0


if __name__ == "__main__":
  sys.exit(main())
