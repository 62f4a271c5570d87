"""A loss-spike probe on text: GPT on GCIDE, AdamW at an aggressive constant lr, b2 0.95 / 0.999.

The ViT's per-batch loss on Fashion-MNIST swings by about ±30%, which hides all but
the largest spikes; a byte-level GPT's swings by a few percent. Width 128, depth 2,
seq 64, batch 32, 400 steps, no global clipping, every step logged (loss and per-layer
RMS_t). The same grid with or without `quick`: it takes about 4 minutes on 2 CPU cores
with `--pack 4`. See experiments/beta2_spikes/README.md for what it showed.
"""

from adamlab.errors import ConfigError


def get_sweep(arg: str = ""):
  if arg not in ("", "quick"):
    raise ConfigError("sweep preset", arg, ("quick",))
  return dict(
      base="configs/gpt.py:sp,adamw",
      fixed={"steps": 400, "batch_size": 32, "model.width": 128, "model.base_width": 128,
             "model.depth": 2, "model.num_heads": 4, "model.seq_len": 64,
             "optimizer.schedule": "constant", "optimizer.warmup_steps": 5,
             "optimizer.grad_clip_norm": 0.0, "optimizer.weight_decay": 0.1,
             "log_every": 1, "eval_every": 400, "eval_batches": 2, "max_nonfinite": 5,
             "checkpoint_every": 10 ** 6},
      axes=[{"optimizer.learning_rate": [3e-2, 1e-1]}, {"optimizer.b2": [0.95, 0.999]}],
      metric="eval_loss",
  )
