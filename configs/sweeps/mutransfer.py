"""muTransfer (Tensor Programs V, Fig. 1): GPT on GCIDE, Adam, SP vs muP, lr x width.

`adamlab sweep --config configs/sweeps/mutransfer.py:quick --workdir sweeps/mutransfer`
"""


def get_sweep(arg: str = ""):
  quick = arg == "quick"
  widths = [32, 64, 128] if quick else [128, 256, 512, 1024, 2048]
  log2_lrs = range(-12, -4, 2) if quick else range(-14, -3)
  return dict(
      base="configs/gpt.py:adamw",
      fixed={"steps": 100 if quick else 5000, "model.base_width": widths[0],
             "model.depth": 2, "model.num_heads": 4, "model.seq_len": 64 if quick else 256,
             "optimizer.warmup_steps": 10 if quick else 500,
             "eval_every": 50 if quick else 500, "checkpoint_every": 1000},
      axes=[{"parametrization": ["sp", "mup"], "optimizer.per_layer_lr": [False, True]},
            {"model.width": widths},
            {"optimizer.learning_rate": [2.0 ** k for k in log2_lrs]}],
      best_of="optimizer.learning_rate",
      metric="eval_loss",
  )
