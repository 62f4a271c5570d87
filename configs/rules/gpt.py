"""Scaling rules for AdamW's learning rate (step 3 of the AdamW tuning method): GPT on GCIDE.

    adamlab fit --config configs/rules/gpt.py:quick,mup --workdir rules/mup --pack 8

Presets: `sp` or `mup` (the parametrization), `quick` (CPU-sized). The scales are
widths x training lengths at one batch size, plus a second batch size at the smaller
widths and lengths; the widest width and the longest length are held out: fitted on
the rest, their optimal lr is predicted, then measured on their own grid. The other
hyperparameters (the fixed set) are held at the near-optimal setting of Marin's AdamW
table: b1 0.9, b2 0.95, weight decay 0.1, clipping 1.0.
"""


def get_rules(arg: str = ""):
  presets = arg.split(",")
  quick = "quick" in presets
  param = "sp" if "sp" in presets else "mup"
  widths = [16, 32, 64, 128] if quick else [128, 256, 512, 1024]
  steps = [25, 50, 100] if quick else [1000, 2000, 4000]
  batches = [8, 16] if quick else [32, 64]
  scales = [
    {"model.width": w, "steps": t, "batch_size": batches[0]} for w in widths for t in steps
  ] + [
    {"model.width": w, "steps": t, "batch_size": batches[1]}
    for w in widths[:-1]
    for t in steps[:-1]
  ]
  return dict(
    base=f"configs/gpt.py:{param},adamw",
    fixed={
      "model.base_width": widths[0],
      "model.depth": 2,
      "model.num_heads": 4,
      "model.seq_len": 32 if quick else 256,
      "optimizer.warmup_steps": 5 if quick else 100,
      "optimizer.b1": 0.9,
      "optimizer.b2": 0.95,
      "optimizer.weight_decay": 0.1,
      "optimizer.grad_clip_norm": 1.0,
      "eval_batches": 8,
      "log_every": 25,
      "eval_every": 10**6,
      "checkpoint_every": 10**6,
      "max_nonfinite": 3,
    },
    scales=scales,
    space={
      "optimizer.learning_rate": [2.0**k for k in (range(-9, -1) if quick else range(-13, -4))]
    },
    baseline={"optimizer.learning_rate": 2.0**-6 if quick else 2.0**-9},  # on the grid
    seeds=[0, 1],
    holdout=[{"model.width": widths[-1]}, {"steps": steps[-1]}],
    metric="eval_loss",
    max_passes=1,
    level=0.9,
    boots=1000,
  )
