"""The worked examples of muP on a user's own model (examples/): the coordinate check
of each (`optim.coord_check`, layers read from the forward's trace) is flat under muP
and not under SP."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
WIDTHS = (32, 64, 128)


def example(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# (example, keyword arguments, the layer whose SP slope grows, widths): the readout's
# output, whose size under SP at one learning rate grows with width after a few Adam
# steps. The scanned Llama at the widths its acceptance names, 64 to 256.
CASES = [
  ("pytree_mlp", {}, "params['w_out']", WIDTHS),
  ("nnx_mlp", {}, "params['out']['kernel'].value", WIDTHS),
  ("linen_transformer", {"tied": False}, "params['readout']['kernel']", WIDTHS),
  ("linen_transformer", {"tied": True}, "params['embed']['embedding']", WIDTHS),
  ("scanned_llama", {}, "params['head']", (64, 128, 256)),
]


@pytest.mark.parametrize(
  "name,kwargs,readout,widths",
  CASES,
  ids=["pytree", "nnx", "linen_untied", "linen_tied", "scanned_llama"],
)
def test_coordinate_check_is_flat_under_mup_and_not_under_sp(name, kwargs, readout, widths):
  module = example(name)
  mup = module.coordinate_check("mup", widths=widths, **kwargs)
  sp = module.coordinate_check("sp", widths=widths, **kwargs)
  assert set(mup) == set(sp) and readout in mup
  # Flat: every layer's size changes by less than 2^0.3 per doubling of the width
  # (measured at most 0.11 to 0.23 across the examples, 3 steps). SP's readout grows by
  # 2^0.3 per doubling more than muP's (measured 0.47 to 0.84 more; theory: m^0.5 to m^1).
  assert max(abs(s) for s in mup.values()) < 0.3, mup
  assert sp[readout] > mup[readout] + 0.3, (sp, mup)
