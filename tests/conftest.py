import os
import shutil
import tempfile

# Tests run on CPU; multi-device tests ask for 8 simulated devices in their own process.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One XLA compilation cache for the whole test run (the pytest workers and every training
# process a test starts inherit it): the many small sweeps and runs compile the same
# programs, each once. Made by the first process, removed by it at the end.
_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="adamlab-tests-xla-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


def pytest_unconfigure(config):
  del config
  if _CACHE:
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def real_data():
  """The real data sets (GCIDE, Fashion-MNIST) in ./data, fetched once if missing."""
  from adamlab import data

  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
  os.environ.setdefault("ADAMLAB_DATA", root)
  data.fetch(os.environ["ADAMLAB_DATA"], log=lambda *_: None)
