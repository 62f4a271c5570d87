"""Params and optimizer states are born sharded: after setup on 8 simulated devices no
live array holds a full-size parameter on one device, the per-device bytes are even,
and the only arrays alive are the training state's."""

import json
import os
import subprocess
import sys

import pytest

from tests.train.test_trainer import ROOT

MESHES = {"fsdp8": {"fsdp": 8}, "data2_fsdp2_tensor2": {"data": 2, "fsdp": 2, "tensor": 2}}
RUNS = ("one", "packed")

# One process sets up each case in turn (8 devices, one JAX start for all four).
SCRIPT = """
import gc, json, sys
import jax, numpy as np
from adamlab.train import train
from adamlab.train.checks import check_config_mesh_and_data
from adamlab.train.config import base


def case(mesh_fields, runs):
  c = base("gpt")
  c.parametrization = "mup"
  c.model.update(dict(width=256, base_width=64, depth=4, num_heads=4, seq_len=64))
  c.mesh.update(mesh_fields)
  c.batch_size, c.ema_decay = 8, 0.99
  mesh, task, source = check_config_mesh_and_data(c)
  packed = [c, c.copy_and_resolve_references()]
  packed[1].optimizer.learning_rate = 2e-3
  _, state = train.setup(packed if runs == "packed" else [c], mesh, task, source)
  gc.collect()
  ids = {id(x) for x in jax.tree.leaves(state)}
  stacked = [x for x in jax.tree.leaves(state["params"]) if x.ndim >= 3]
  kernels = {tuple(x.shape) for x in stacked} | {tuple(x.shape[1:]) for x in stacked}
  per_device = {str(d): 0 for d in jax.devices()}
  for x in jax.tree.leaves({k: state[k] for k in ("params", "opt_state", "ema")}):
    shard_bytes = int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
    for device in x.sharding.device_set:  # (from the sharding: no shard is materialized)
      per_device[str(device)] += shard_bytes
  live = jax.live_arrays()
  return dict(
    others=[list(x.shape) for x in live if id(x) not in ids],
    full_on_one=[list(x.shape) for x in live
                 if tuple(x.shape) in kernels and len(x.sharding.device_set) == 1],
    per_device=list(per_device.values()),
    n_kernels=len(kernels))


meshes, runs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({f"{m}-{r}": case(fields, r) for m, fields in meshes.items() for r in runs}))
"""


@pytest.fixture(scope="module")
def measured():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  r = subprocess.run(
    [sys.executable, "-c", SCRIPT, json.dumps(MESHES), json.dumps(RUNS)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr
  return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("runs", RUNS)
def test_setup_leaves_no_full_size_parameter_on_one_device(measured, mesh, runs):
  got = measured[f"{mesh}-{runs}"]
  assert got["n_kernels"] >= 3
  assert got["full_on_one"] == []  # no kernel, stacked or not, whole on one device
  # Besides the training state only the packed runs' hyperparameters (one value per
  # run, which the step reads) are alive: no copy of any parameter.
  k = 2 if runs == "packed" else 1
  assert all(shape == [k] for shape in got["others"]), got["others"]
  assert len(got["others"]) == (0 if k == 1 else 6)  # lr, b1, b2, eps, decay, clip
  mean = sum(got["per_device"]) / len(got["per_device"])
  assert max(got["per_device"]) <= 1.1 * mean and min(got["per_device"]) >= 0.9 * mean
