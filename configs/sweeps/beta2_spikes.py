"""beta2 and loss spikes (Wortsman et al. 2023): ViT on Fashion-MNIST, AdamW vs StableAdamW.

An aggressive lr with a short warmup, no global gradient clipping, b2 in {0.95, 0.99,
0.999}; every step logs loss and per-layer RMS_t. `python scripts/beta2_spikes.py
--quick` runs it and draws the figure; `scripts/rms_spikes.py` reuses its runs.
"""


def get_sweep(arg: str = ""):
  quick = arg == "quick"
  return dict(
      base="configs/vit.py:sp",
      fixed={"steps": 400 if quick else 5000, "batch_size": 64,
             "model.width": 64 if quick else 384, "model.base_width": 64 if quick else 384,
             "model.depth": 4 if quick else 12, "model.num_heads": 4 if quick else 6,
             "optimizer.learning_rate": 1e-2 if quick else 3e-3,
             "optimizer.warmup_steps": 5 if quick else 50,  # short warmup: spikes
             "optimizer.grad_clip_norm": 0.0, "optimizer.weight_decay": 0.1,
             "log_every": 1, "eval_every": 100 if quick else 1000, "eval_batches": 8,
             "max_nonfinite": 5, "checkpoint_every": 10 ** 6},
      axes=[{"optimizer.name": ["adamw", "stable_adamw"]},
            {"optimizer.b2": [0.95, 0.99, 0.999]}],
      metric="eval_loss",
  )
