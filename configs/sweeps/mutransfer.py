"""muTransfer (Tensor Programs V, Fig. 1): GPT on GCIDE, Adam, SP vs muP, lr x width.

`python scripts/mutransfer.py --quick` runs it and draws the figure.
"""


def get_sweep(arg: str = ""):
  quick = arg == "quick"
  widths = [32, 64, 128, 256] if quick else [128, 256, 512, 1024, 2048]
  log2_lrs = range(-12, -2) if quick else range(-14, -2)
  return dict(
      base="configs/gpt.py:adamw",
      fixed={"steps": 100 if quick else 5000, "model.base_width": widths[0],
             "model.depth": 2, "model.num_heads": 4, "model.seq_len": 32 if quick else 256,
             "optimizer.warmup_steps": 10 if quick else 500,
             "eval_every": 50 if quick else 500, "checkpoint_every": 1000},
      axes=[{"parametrization": ["sp", "mup"], "optimizer.per_layer_lr": [False, True]},
            {"model.width": widths},
            {"optimizer.learning_rate": [2.0 ** k for k in log2_lrs]}],
      best_of="optimizer.learning_rate",
      metric="eval_loss",
  )
