"""Timing helpers for benchmarks: min and median over repeats, in one process."""

import platform
import statistics
import time

import jax


def time_fn(fn, *args, repeats=20, warmup=2):
  """Seconds per call of a jitted fn (blocks on its outputs): (min, median)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return min(times), statistics.median(times)


def machine() -> str:
  dev = jax.devices()[0]
  return f"{platform.processor() or platform.machine()}, {dev.platform}: {dev.device_kind}, {jax.device_count()} device(s), jax {jax.__version__}"
