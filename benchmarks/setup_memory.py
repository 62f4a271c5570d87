"""Setup memory per device: the params born sharded against the eager init they replace.

    python benchmarks/setup_memory.py [--devices 1,2,8] [--width 256]

(also a section of `benchmarks/memory.py`, and so of `benchmarks/run.py`'s report)

For each device count n (simulated CPU devices, `mesh.fsdp = n`), one process sets up
a muP GPT and reports, as ratios to P / n (P: the bytes of the params):

- init peak: XLA's memory analysis of the jitted init (`models.param_init`) on one
  device: its arguments, outputs and temporaries, the most the init holds at once;
- setup live: after the trainer's `setup`, the largest per-device total of live
  arrays (params, Adam's moments, the EMA: about 4 P / n when all are sharded);
- eager: the eager init that setup used before (build the model on the default
  device, then `device_put` the params), measured in the same process: the bytes it
  leaves on device 0 before placement.

A ratio that stays flat as n grows means the setup scales with the mesh; a ratio that
grows as n means one device holds everything.
"""

import argparse
import json
import os
import subprocess
import sys

SCRIPT = """
import gc, json, sys
import jax, numpy as np
from adamlab import models
from adamlab.train import mesh as mesh_lib, optimizer, train
from adamlab.train.checks import check_config_mesh_and_data
from adamlab.train.config import base

width, n = int(sys.argv[1]), jax.device_count()
c = base("gpt")
c.parametrization = "mup"
c.model.update(dict(width=width, base_width=64, depth=4, num_heads=4, seq_len=64))
c.mesh.fsdp, c.batch_size, c.ema_decay = n, 8, 0.99
mesh, task, source = check_config_mesh_and_data(c)
key = jax.random.PRNGKey(c.seed)
shardings = lambda abstract: mesh_lib.param_shardings(abstract, mesh)
_, init, _ = models.param_init(c, key, "adam", shardings)
memory = init.lower(key).compile().memory_analysis()
peak = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
shapes = jax.eval_shape(init, key)
param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
_, state = train.setup([c], mesh, task, source)
gc.collect()
per_device = {}
for x in jax.live_arrays():
  shard = int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
  for d in x.sharding.device_set:
    per_device[d] = per_device.get(d, 0) + shard
setup_live = max(per_device.values())
del state
gc.collect()
model, _ = optimizer.build_model(c, key)  # the eager init setup used before
eager = sum(x.nbytes for x in jax.live_arrays() if jax.devices()[0] in x.sharding.device_set)
print(json.dumps(dict(devices=n, param_bytes=param_bytes, init_peak=peak,
                      setup_live=setup_live, eager=eager)))
"""


def measure(devices: int, width: int) -> dict:
  env = dict(
    os.environ,
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    JAX_PLATFORMS="cpu",
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(width)],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(r.stdout.strip().splitlines()[-1])


TITLE = (
  "Setup, params born sharded: peak bytes per device against P / n (muP GPT, depth 4, "
  "StableAdamW with an EMA, mesh.fsdp = n simulated CPU devices)"
)


def report(rows) -> str:
  lines = [
    "| devices | params P | init peak / (P/n) | setup live / (P/n) | eager on device 0 / (P/n) |",
    "|---|---|---|---|---|",
  ]
  for r in rows:
    share = r["param_bytes"] / r["devices"]
    lines.append(
      f"| {r['devices']} | {r['param_bytes'] / 2**20:.1f} MiB | {r['init_peak'] / share:.2f} "
      f"| {r['setup_live'] / share:.2f} | {r['eager'] / share:.2f} |"
    )
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,8")
  parser.add_argument("--width", type=int, default=256)
  args = parser.parse_args()
  rows = [measure(int(n), args.width) for n in args.devices.split(",")]
  print(report(rows))


if __name__ == "__main__":
  main()
