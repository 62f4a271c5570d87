import os

# Tests run on CPU; multi-device tests ask for 8 simulated devices in their own process.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def real_data():
  """The real data sets (GCIDE, Fashion-MNIST) in ./data, fetched once if missing."""
  from adamlab import data
  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
  os.environ.setdefault("ADAMLAB_DATA", root)
  data.fetch(os.environ["ADAMLAB_DATA"], log=lambda *_: None)
