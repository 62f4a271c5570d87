"""Loss spikes from an out-of-date second moment (seed 000): AdamW, StableAdamW, Adam-atan2.

Adam spikes after a long stretch in which the gradients are small next to the second
moment v: v decays like b2^t, then an ordinary gradient gives a far too large step.
Memorizing a small training set reaches that stretch cheaply. The arg is
"[quick,]<regime>[,skip]":

  full_batch  TP5 MLP on the first Fashion-MNIST images, the whole subset every step
              (quick: width 128, 256 images, 3000 steps; full: width 256, 1024, 10000)
  minibatch   TP5 MLP (width 256) on the first 1024 images, random batches of 128
              (quick: 3000 steps; full: 10000)
  vit         a ViT (patch 7, depth 2) on the first 256 images, full batch, AdamW and
              StableAdamW only (quick: width 32, 3000 steps; full: width 64, 1024, 10000)
  skip        AdamW only, with the skip-bad-steps wrapper on (optimizer.skip_spikes_*)
  max_in_row  with skip: accept the step after 10 skips in a row
  eps         AdamW and StableAdamW, eps in {1e-10, 1e-8, 1e-7, 1e-6, 1e-5} x b2
  atan2       Adam-atan2 at (a, b) = (1.27, 1), optax's default, and a = b in {0.25,
              1, 4}: the same step as Adam while |m| << b sqrt(v), at most a pi / 2
  width       full batch, AdamW at b2 0.95, 2000 steps, eps in {1e-7, 3e-7, 1e-6} at
              base width 64, widths 64 to 512: sp (one lr, one eps), mup (lr and eps
              per layer, shrinking with width) and mup with one eps

No warmup, no gradient clipping, no weight decay, a constant lr of 1e-3: what a user
who calls optax.adam gets. `scripts/loss_spikes.py` runs both regimes and draws the figure.
"""

REGIMES = {
    "full_batch": lambda quick: {"batch_size": 256 if quick else 1024,
                                 "data.train_size": 256 if quick else 1024,
                                 "data.full_batch": True, "model.width": 128 if quick else 256},
    "minibatch": lambda quick: {"batch_size": 128, "data.train_size": 1024, "model.width": 256},
    "vit": lambda quick: {"batch_size": 256 if quick else 1024,
                          "data.train_size": 256 if quick else 1024, "data.full_batch": True,
                          "model.width": 32 if quick else 64, "model.depth": 2,
                          "model.num_heads": 2, "model.patch_size": 7},
}
ARMS = {"optimizer.name": ["adamw", "stable_adamw", "adam_atan2"]}
VIT_ARMS = {"optimizer.name": ["adamw", "stable_adamw"]}
SKIP = {"optimizer.name": ["adamw"], "optimizer.skip_spikes_k": [6.0]}
EPS = {"optimizer.eps": [1e-10, 1e-8, 1e-7, 1e-6, 1e-5]}
# sp: one lr and one eps for every layer; mup: the table's lr and eps per layer; mup with
# scale_eps off: the table's lr with one eps (what the eps scaling alone does).
WIDTH = [{"parametrization": ["sp", "mup", "mup"], "optimizer.per_layer_lr": [False, True, True],
          "optimizer.scale_eps": [False, True, False]},
         {"model.width": [64, 128, 256, 512]}, {"optimizer.eps": [1e-7, 3e-7, 1e-6]}]
ATAN2 = {"optimizer.a": [1.27, 0.25, 1.0, 4.0], "optimizer.b": [1.0, 0.25, 1.0, 4.0]}


def _arms(words, regime):
  if "skip" in words:
    return SKIP
  if "width" in words:
    return {"optimizer.name": ["adamw"]}
  if "eps" in words:
    return VIT_ARMS
  if "atan2" in words:
    return {"optimizer.name": ["adam_atan2"]}
  return VIT_ARMS if regime == "vit" else ARMS


def get_sweep(arg: str = ""):
  words = arg.split(",") if arg else []
  quick = "quick" in words
  regime = next((w for w in words if w in REGIMES), "full_batch")
  fixed = REGIMES[regime](quick)
  if "max_in_row" in words:
    fixed["optimizer.skip_spikes_max_in_row"] = 10
  if "width" in words:  # the base width is the narrowest, as in the transfer figures
    fixed.update({"model.width": 64, "steps": 2000, "plots": False})
  return dict(
      base="configs/vit.py:sp" if regime == "vit" else "configs/mlp.py:sp",
      fixed={"model.base_width": fixed["model.width"], "steps": 3000 if quick else 10000, **fixed,
             "optimizer.learning_rate": 1e-3, "optimizer.schedule": "constant",
             "optimizer.warmup_steps": 0, "optimizer.grad_clip_norm": 0.0,
             "optimizer.weight_decay": 0.0, "optimizer.skip_spikes_metric": "both",
             "log_every": 100, "eval_every": 1000, "eval_batches": 4,
             "checkpoint_every": 10 ** 6},
      axes=[_arms(words, regime), {"seed": [0, 1, 2]},
            {"optimizer.b2": [0.95] if "width" in words else [0.95, 0.99, 0.999]}]
      + (WIDTH if "width" in words else [EPS] if "eps" in words
         else [ATAN2] if "atan2" in words else []),
      metric="eval_loss",
  )
