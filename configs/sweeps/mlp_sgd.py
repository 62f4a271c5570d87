"""MLP + SGD (Tensor Programs V): the 2-hidden-layer MLP on Fashion-MNIST, SP vs muP.

`python scripts/mlp_sgd.py --quick` runs it and draws the figure.
"""


def get_sweep(arg: str = ""):
  quick = arg == "quick"
  widths = [64, 128, 256, 512, 1024] if quick else [256, 512, 1024, 2048, 4096, 8192]
  return dict(
      base="configs/mlp.py:sgd",
      fixed={"steps": 400 if quick else 3000, "batch_size": 64, "log_every": 2,
             "model.base_width": widths[0],
             "optimizer.schedule": "constant", "optimizer.warmup_steps": 0,
             "optimizer.grad_clip_norm": 0.0,  # plain SGD, as in the paper
             "max_nonfinite": 2, "eval_every": 100 if quick else 1000, "eval_batches": 8,
             "checkpoint_every": 10 ** 6},
      axes=[{"parametrization": ["sp", "mup"], "optimizer.per_layer_lr": [False, True]},
            {"model.width": widths},
            {"optimizer.learning_rate": [2.0 ** k for k in range(-8, 3)]}],
      best_of="optimizer.learning_rate",
      metric="eval_loss",
  )
