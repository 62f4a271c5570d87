"""Epsilon underflow (Everett et al. 2024): final loss vs Adam's eps at several widths.

muP Adam on the TP5 MLP and Fashion-MNIST. Gradients of hidden and output weights
shrink with width, so a fixed eps that is harmless at small width swamps sqrt(v) at
large width; eps scaled with each layer's gradient scale (`optimizer.scale_eps`) should
keep the best eps in place. Preset `atan2`: Adam-atan2 at the same widths, which has
no eps. `python scripts/epsilon.py --quick` runs both and draws the figure.
"""


def get_sweep(arg: str = ""):
  presets = set(filter(None, arg.split(",")))
  quick = "quick" in presets
  widths = [64, 256, 1024] if quick else [256, 1024, 4096, 16384]
  fixed = {"steps": 400 if quick else 3000, "batch_size": 64, "log_every": 2,
           "model.base_width": widths[0],
           "parametrization": "mup", "optimizer.learning_rate": 2.0 ** -8,
           "optimizer.warmup_steps": 20, "optimizer.grad_clip_norm": 0.0,
           "max_nonfinite": 2, "eval_every": 100 if quick else 1000, "eval_batches": 8,
           "checkpoint_every": 10 ** 6}
  if "atan2" in presets:
    return dict(base="configs/mlp.py:adam_atan2", fixed=fixed, axes=[{"model.width": widths}],
                metric="eval_loss")
  return dict(
      base="configs/mlp.py:adamw",
      fixed=fixed,
      axes=[{"optimizer.scale_eps": [False, True]},
            {"model.width": widths},
            {"optimizer.eps": [10.0 ** k for k in range(-12, 2)]}],
      best_of="optimizer.eps",
      metric="eval_loss",
  )
