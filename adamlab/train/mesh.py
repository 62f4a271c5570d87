"""Device mesh and shardings: parameters by logical axis names, batches over data + fsdp.

Axes of the mesh: data (pure data parallel), fsdp (data parallel with parameters and
optimizer state sharded), tensor (tensor parallel). A logical axis maps to a mesh axis
only where that axis divides the dimension; otherwise the dimension is replicated.
"""

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from adamlab.errors import ConfigError

AXES = ("data", "fsdp", "tensor")
# Logical axis name (models' Param metadata) -> mesh axis.
RULES = {
  "embed": "fsdp",
  "mlp": "tensor",
  "qkv": "tensor",
  "heads": "tensor",
  "vocab": "tensor",
  "classes": None,
  "seq": None,
  "patch": None,
  "input": None,
  "head_dim": None,
}


def default_config() -> ml_collections.ConfigDict:
  """The `mesh` section: sizes of the data, fsdp and tensor axes (-1: all other devices)."""
  return ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))


def make_mesh(cfg, devices=None) -> jax.sharding.Mesh:
  devices = devices if devices is not None else jax.devices()
  n = len(devices)
  sizes = [cfg[a] for a in AXES]
  for a, s in zip(AXES, sizes):
    if not isinstance(s, int) or (s < 1 and s != -1):
      raise ConfigError(f"mesh.{a}", s, "a positive integer or -1")
  if sizes.count(-1) > 1:
    raise ConfigError("mesh", dict(zip(AXES, sizes)), "at most one axis of size -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if n % known:
      raise ConfigError("mesh", dict(zip(AXES, sizes)), f"sizes that divide the {n} devices")
    sizes[sizes.index(-1)] = n // known
  if int(np.prod(sizes)) != n:
    raise ConfigError(
      "mesh", dict(zip(AXES, sizes)), f"sizes whose product is the number of devices ({n})"
    )
  return jax.make_mesh(
    tuple(sizes), AXES, devices=devices, axis_types=(jax.sharding.AxisType.Auto,) * 3
  )


def spec(shape, axes, mesh) -> P:
  """PartitionSpec of one parameter from its logical axes."""
  used, out = set(), []
  for dim, name in zip(shape, axes):
    mesh_axis = RULES.get(name)
    if mesh_axis and mesh_axis not in used and dim % mesh.shape[mesh_axis] == 0:
      out.append(mesh_axis)
      used.add(mesh_axis)
    else:
      out.append(None)
  return P(*out)


def param_shardings(model, mesh):
  """Nested dict (like nnx.to_pure_dict of the params) of NamedShardings."""
  tree = {}
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param):
      node = tree
      for k in path[:-1]:
        node = node.setdefault(k, {})
      shape = var.get_value().shape  # (an abstract model's values are ShapeDtypeStructs)
      node[path[-1]] = NamedSharding(mesh, spec(shape, var.get_metadata("axes"), mesh))
  return tree


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
