"""Data pipeline: host batches/s of data.source against the steps/s training consumes.

    python benchmarks/data_pipeline.py [--batches 200] [--repeats 5]

For the default GPT config (GCIDE text) and the ViT config (Fashion-MNIST): blocks of
`batches` calls of source(config).batch(step), each at a new step as in training, against
the trainer's jitted train step on the same config (one device-resident batch), in one
process. The trainer puts source.batch's arrays on the devices as they are (no host-side
conversion in between), so batch() is the whole host-side cost. Ratio = batches/s over
steps/s: how far ahead of the step the pipeline is.
"""

import argparse
import statistics
import time

from adamlab import data
from adamlab.train.config import load
from common import machine, train_step_time

CONFIGS = {
  "GPT (GCIDE)": "configs/gpt.py:mup,stable_adamw",
  "ViT (Fashion-MNIST)": "configs/vit.py:mup,stable_adamw",
}


def batch_time(source, batches, repeats):
  """Seconds per batch of each block of `batches` calls, after a short warm-up."""
  for step in range(5):  # the page cache and numpy's first calls
    source.batch(step)
  step, times = 5, []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(batches):
      source.batch(step)
      step += 1
    times.append((time.perf_counter() - t) / batches)
  return times


def run(batches=200, repeats=5, step_repeats=20):
  rows = []
  for name, spec in CONFIGS.items():
    config, _ = load([f"--config={spec}"])
    per_batch = batch_time(data.source(config), batches, repeats)
    (step_min, step_med), _ = train_step_time(config, repeats=step_repeats)
    b_min, b_med = min(per_batch), statistics.median(per_batch)
    rows.append(
      dict(
        config=name,
        spec=spec,
        batch_size=config.batch_size,
        batch_min_s=b_min,
        batch_median_s=b_med,
        step_min_s=step_min,
        step_median_s=step_med,
        # batches/s over steps/s = step time over batch time
        ratio_min=step_min / b_min,
        ratio_median=step_med / b_med,
      )
    )
  return dict(
    machine=machine(), batches=batches, repeats=repeats, step_repeats=step_repeats, rows=rows
  )


def report(result, target=None) -> str:
  lines = [
    f"Host batches/s of data.source vs the trainer's jitted step, {result['machine']}; "
    f"{result['repeats']} blocks of {result['batches']} batches, "
    f"{result['step_repeats']} steps",
    "",
    "| config | batch | batches/s (best / median) | train steps/s (best / median) | "
    "ratio (best / median) |" + (" target |" if target else ""),
    "|---|---|---|---|---|" + ("---|" if target else ""),
  ]
  for r in result["rows"]:
    row = (
      f"| {r['config']} (`{r['spec']}`) | {r['batch_size']} | {1 / r['batch_min_s']:.0f} / "
      f"{1 / r['batch_median_s']:.0f} | {1 / r['step_min_s']:.1f} / "
      f"{1 / r['step_median_s']:.1f} | {r['ratio_min']:.1f}x / {r['ratio_median']:.1f}x |"
    )
    if target:
      row += f" >= {target:g}x: {'met' if r['ratio_min'] >= target else 'not met'} |"
    lines.append(row)
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--step-repeats", type=int, default=20)
  args = parser.parse_args()
  print(report(run(args.batches, args.repeats, args.step_repeats)))
