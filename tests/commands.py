"""The command line as the tests run it: `python -m adamlab.cli ...`, a real subprocess
in the repository root, on CPU with `devices` simulated devices."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def adamlab(*args, devices: int = 1, env=None, timeout: int = 900):
  """The finished process (its returncode, stdout and stderr)."""
  flags = f"--xla_force_host_platform_device_count={devices}"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, **(env or {})}
  return subprocess.run(
    [sys.executable, "-m", "adamlab.cli", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
  )
