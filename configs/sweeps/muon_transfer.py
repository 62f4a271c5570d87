"""Muon width transfer: GPT on GCIDE, five arms, width x lr x seed.

Arms (one learning rate for Muon's matrices and the Adam leaves in every Muon arm):
- Muon with no shape factor, one global lr;
- Muon with the spectral factor sqrt(max(1, fan_out / fan_in)), one global lr;
- Muon with Moonshot's RMS matching 0.2 sqrt(max(fan_in, fan_out)), one global lr;
- muP-Muon: the table's exponents (spectral factor);
- muP AdamW, the reference.
`python scripts/muon_transfer.py --quick` runs it and draws the figure.
"""

# (optimizer.name, parametrization, per_layer_lr, muon_shape) of each arm.
ARMS = [
    ("muon", "sp", False, "none"),
    ("muon", "sp", False, "spectral"),
    ("muon", "sp", False, "rms"),
    ("muon", "mup", True, "spectral"),
    ("adamw", "mup", True, "spectral"),
]


def get_sweep(arg: str = ""):
  quick = "quick" in arg.split(",")
  widths = [32, 64, 128, 256] if quick else [128, 256, 512, 1024, 2048]
  log2_lrs = range(-9, -2) if quick else range(-13, -1)
  return dict(
      base="configs/gpt.py",
      fixed={"steps": 80 if quick else 3000, "batch_size": 16 if quick else 64,
             "model.base_width": widths[0], "model.depth": 2, "model.num_heads": 4,
             "model.seq_len": 32 if quick else 256,
             "optimizer.warmup_steps": 8 if quick else 300, "optimizer.b2": 0.95,
             "log_every": 4, "eval_every": 80 if quick else 500, "eval_batches": 2,
             "checkpoint_every": 10000},
      axes=[{"optimizer.name": [a[0] for a in ARMS], "parametrization": [a[1] for a in ARMS],
             "optimizer.per_layer_lr": [a[2] for a in ARMS],
             "optimizer.muon_shape": [a[3] for a in ARMS]},
            {"model.width": widths}, {"seed": [0, 1]},
            {"optimizer.learning_rate": [2.0 ** k for k in log2_lrs]}],
      best_of="optimizer.learning_rate",
      metric="eval_loss",
  )
