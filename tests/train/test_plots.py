"""Run plots: the files plot_run writes and which layers rms.png names."""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from adamlab.train import metrics, plots

# Ten block layers with flat RMS_t near 1, a patch embedding (kernel, bias) that stays
# low, and one attention layer that spikes to 40 at step 30.
BLOCKS = [f"blocks_{i}.mlp.kernel" for i in range(10)]
SPIKER = "blocks_3.attn.qkv.kernel"
PATCH = ["patch_embed.kernel", "patch_embed.bias"]


def _rms(layer: str, step: int) -> float:
  if layer == SPIKER:
    return 40.0 if step == 30 else 0.9
  if layer in PATCH:
    return 0.3
  return 1.0 + 0.01 * BLOCKS.index(layer)  # distinct peaks, all far below the spike


@pytest.fixture
def run_dir(tmp_path):
  w = metrics.Writer(str(tmp_path))
  for step in range(1, 51):
    row = {"loss": 3.0 / step, "lr": 1e-3}
    row.update({"rms/" + k: _rms(k, step) for k in BLOCKS + [SPIKER] + PATCH})
    if step == 50:
      row["eval_loss"] = 0.07
    w.write(step, row)
  w.close()
  return str(tmp_path)


def test_plot_run_writes_the_three_plots(run_dir):
  written = plots.plot_run(run_dir)
  assert [os.path.basename(p) for p in written] == ["loss.png", "lr.png", "rms.png"]
  for p in written:
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_rms_legend_names_the_spike_and_the_patch_embedding(run_dir):
  plots.plot_run(run_dir)
  rows = plots.read_metrics(run_dir)
  fig = plots.rms_figure(rows)
  try:
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == plots.MAX_LABELS
    # Highest peak first, with its value, so the spiking layer heads the legend.
    assert labels[0] == f"{SPIKER} (max 40)"
    for layer in PATCH:
      assert any(lab.startswith(layer + " ") for lab in labels), (layer, labels)
    # The remaining slots go to the highest of the flat layers.
    named = {lab.split(" ")[0] for lab in labels}
    assert named == {SPIKER, *PATCH, BLOCKS[9], BLOCKS[8], BLOCKS[7]}
    # Every layer is drawn; the unnamed ones thin and grey.
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 50]
    assert len(lines) == len(BLOCKS) + 1 + len(PATCH)
    grey = [ln for ln in lines if ln.get_label().startswith("_")]
    assert len(grey) == len(lines) - plots.MAX_LABELS
    assert all(ln.get_color() == "0.6" and ln.get_linewidth() < 1 for ln in grey)
  finally:
    plt.close(fig)


def test_rms_labels_top_five_without_patch_and_overflow_counts_as_peak():
  rows = [{"step": s, **{f"rms/l{i}": float(i) for i in range(9)}} for s in range(3)]
  rows[1]["rms/l0"] = "inf"  # what the writer stores for an overflowed value
  assert plots.rms_labels(rows) == ["rms/l0", "rms/l8", "rms/l7", "rms/l6", "rms/l5"]
  assert plots.peak(rows, "rms/l0") == math.inf


def test_rms_labels_few_layers_names_them_all():
  rows = [{"step": 1, "rms/a": 2.0, "rms/b": 1.0}, {"step": 2, "rms/a": 0.5}]
  assert plots.rms_labels(rows) == ["rms/a", "rms/b"]
