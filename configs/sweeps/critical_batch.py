"""Critical batch size (McCandlish et al. 2018; seed 003): steps to a target loss vs batch size.

The TP5 MLP (muP, Adam, constant lr after a short warmup) on Fashion-MNIST at batch
sizes 16-1024, four learning rates each (the best one per batch size counts).
`python scripts/critical_batch.py --quick` runs it and fits S(B) = S_min (1 + B_crit / B).
"""


def get_sweep(arg: str = ""):
  quick = arg == "quick"
  return dict(
      base="configs/mlp.py:mup,adamw",
      fixed={"steps": 1000 if quick else 5000, "model.width": 256, "model.base_width": 256,
             "optimizer.schedule": "constant", "optimizer.warmup_steps": 10,
             "optimizer.grad_clip_norm": 0.0, "log_every": 5, "max_nonfinite": 2,
             "eval_every": 10 ** 6, "checkpoint_every": 10 ** 6},
      axes=[{"batch_size": [16, 32, 64, 128, 256, 512, 1024]},
            {"optimizer.learning_rate": [2.0 ** k for k in (-13, -11, -9, -7)]}],
      best_of="optimizer.learning_rate",
      metric="loss",
  )
