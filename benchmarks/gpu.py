"""GPU throughput: a ~125M-parameter GPT in bf16 at seq 1024; step time, tokens/s, MFU.

    python benchmarks/gpu.py [--repeats 10]

The trainer's jitted step on one device (common.train_step_time); MFU = the trainer's
model FLOPs per step (6 N per token plus attention) / step time / the device's peak
bf16 FLOP/s (the trainer's table, or config.peak_flops). Without a GPU, nothing runs.
"""

import argparse

import jax

from adamlab.train.config import load
from adamlab.train import train
from common import machine, train_step_time

# 768 wide, 18 blocks of 12 heads, byte vocabulary: 128.6M parameters. base_width = width,
# so the muP table is SP at this width (the cost is the same either way).
MODEL = [
  "--config=configs/gpt.py:mup,stable_adamw",
  "--config.model.width=768",
  "--config.model.base_width=768",
  "--config.model.num_heads=12",
  "--config.model.depth=18",
  "--config.model.seq_len=1024",
  "--config.model.dtype=bfloat16",
  "--config.batch_size=16",
]


def run(repeats=10, force=False, overrides=()):
  """force and overrides: run off a GPU with a smaller model (to test this code path)."""
  dev = jax.devices()[0]
  result = dict(machine=machine(), platform=dev.platform, device_kind=dev.device_kind)
  if dev.platform != "gpu" and not force:
    return result
  config, _ = load(MODEL + list(overrides))
  (step_min, step_med), params = train_step_time(config, repeats=repeats)
  flops = train._flops_per_step(config, params)
  peak = train._peak_flops(config)  # per device; 0 when the device is not in the table
  tokens = config.batch_size * config.model.seq_len
  result.update(
    params=sum(p.size for p in jax.tree.leaves(params)),
    width=config.model.width,
    depth=config.model.depth,
    seq_len=config.model.seq_len,
    batch_size=config.batch_size,
    dtype=config.model.dtype,
    repeats=repeats,
    flops_per_step=flops,
    peak_flops=peak,
    step_min_s=step_min,
    step_median_s=step_med,
    tokens_per_s_best=tokens / step_min,
    tokens_per_s_median=tokens / step_med,
    mfu_best=flops / step_min / peak if peak else None,
    mfu_median=flops / step_med / peak if peak else None,
  )
  return result


def report(result) -> str:
  if "step_min_s" not in result:
    return (
      f"Device: {result['platform']} ({result['device_kind']}). "
      "Not measured: no GPU on this machine."
    )
  r = result
  mfu = (
    f"{100 * r['mfu_best']:.1f}% / {100 * r['mfu_median']:.1f}%"
    if r["mfu_best"] is not None
    else "n/a (peak FLOP/s of this device unknown: set config.peak_flops)"
  )
  return "\n".join(
    [
      f"GPT {r['params'] / 1e6:.1f}M params (width {r['width']}, depth {r['depth']}), "
      f"{r['dtype']}, seq {r['seq_len']}, batch {r['batch_size']}, {r['machine']}; "
      f"{r['repeats']} steps",
      "",
      "| step ms (best / median) | tokens/s (best / median) | model TFLOP/step | "
      "peak TFLOP/s | MFU (best / median) |",
      "|---|---|---|---|---|",
      f"| {1e3 * r['step_min_s']:.1f} / {1e3 * r['step_median_s']:.1f} | "
      f"{r['tokens_per_s_best']:.0f} / {r['tokens_per_s_median']:.0f} | "
      f"{r['flops_per_step'] / 1e12:.2f} | {r['peak_flops'] / 1e12:.0f} | {mfu} |",
    ]
  )


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=10)
  print(report(run(parser.parse_args().repeats)))
