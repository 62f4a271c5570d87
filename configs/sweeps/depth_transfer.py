"""Depth transfer: GPT on GCIDE at fixed width, muP Adam, depth x lr, per depth exponent alpha.

alpha 0 is standard practice (nothing depends on depth), 1/2 Depth-muP (Tensor Programs
VI), 1 CompleteP (Dey et al. 2025); base depth 2. `python scripts/depth_transfer.py
--quick` runs it and draws the figure.
"""


def get_sweep(arg: str = ""):
  quick = "quick" in arg.split(",")
  depths = [2, 4, 8, 16] if quick else [2, 4, 8, 16, 32]
  log2_lrs = range(-10, -3) if quick else range(-13, -3)
  return dict(
      base="configs/gpt.py:mup,adamw",
      fixed={"steps": 120 if quick else 2000, "batch_size": 16 if quick else 64,
             "model.width": 32 if quick else 256, "model.base_width": 32 if quick else 256,
             "model.base_depth": 2, "model.num_heads": 2 if quick else 4,
             "model.seq_len": 32 if quick else 128,
             "model.scan_layers": True,  # one compiled block: compile time flat in depth
             "optimizer.warmup_steps": 12 if quick else 200, "log_every": 5,
             "eval_every": 120 if quick else 500, "eval_batches": 2,
             "checkpoint_every": 10000},
      axes=[{"model.alpha": [0.0, 0.5, 1.0]}, {"model.depth": depths},
            {"seed": [0, 1]}, {"optimizer.learning_rate": [2.0 ** k for k in log2_lrs]}],
      best_of="optimizer.learning_rate",
      metric="eval_loss",
  )
