import os

# Tests run on CPU; multi-device tests ask for 8 simulated devices in their own process.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
