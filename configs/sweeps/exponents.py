"""Parametrization exponents (Everett et al. 2024): SP, NTK, muP and mean-field with Adam.

Every parametrization with its per-layer learning-rate exponents (full alignment), on
the TP5 MLP and Fashion-MNIST; one global lr is swept at each width. If a
parametrization's exponents are right, its optimal global lr does not move with width.
`python scripts/exponents.py --quick` runs it and fits the exponents.
"""


def get_sweep(arg: str = ""):
  quick = arg == "quick"
  widths = [64, 128, 256, 512] if quick else [256, 512, 1024, 2048, 4096]
  return dict(
      base="configs/mlp.py:adamw",
      fixed={"steps": 400 if quick else 3000, "batch_size": 64, "log_every": 2,
             "model.base_width": widths[0],
             "optimizer.per_layer_lr": True, "alignment": "full",
             "optimizer.schedule": "warmup_cosine", "optimizer.warmup_steps": 20,
             "optimizer.grad_clip_norm": 0.0,  # global clipping would rescale lr with width
             "max_nonfinite": 2, "eval_every": 100 if quick else 1000, "eval_batches": 8,
             "checkpoint_every": 10 ** 6},
      axes=[{"parametrization": ["sp", "ntk", "mup", "mfp"]},
            {"model.width": widths},
            {"optimizer.learning_rate": [2.0 ** k for k in range(-13, -3)]}],
      best_of="optimizer.learning_rate",
      metric="eval_loss",
  )
