"""Does StableAdamW's update clipping replace warmup? (Wortsman et al. 2023; seed 000)

Adafactor's update clipping, which StableAdamW adopts, was introduced for runs without
warmup, where the second moment is out of date in the first steps. The arg is
"[quick,]<model>":

  gpt   GPT on GCIDE, byte level (quick: width 32, depth 2, seq 32, batch 8, 200 steps;
        full: width 128, depth 4, seq 128, batch 32, 2000 steps)
  vit   ViT on Fashion-MNIST, patch 7 (quick: width 32, depth 2, batch 32, 200 steps;
        full: width 128, depth 4, batch 128, 2000 steps)

Arms: AdamW, StableAdamW (update clipping at 1) and AdamW with global-norm gradient
clipping at 1; no warmup against a linear warmup over the first 10% of the steps; then a
cosine decay to 0; lr 2^-8 to 2^-2 (6 octaves); b2 0.95, 0.99, 0.999; 3 seeds. No weight
decay. Every step logs the loss and each layer's RMS_t. `python scripts/warmup.py
--quick` runs both models and draws the figure.
"""

from adamlab.errors import ConfigError

MODELS = {
  "gpt": lambda quick: dict(
    base="configs/gpt.py:sp",
    fixed={
      "model.width": 32 if quick else 128,
      "model.depth": 2 if quick else 4,
      "model.num_heads": 2 if quick else 4,
      "model.seq_len": 32 if quick else 128,
      "batch_size": 8 if quick else 32,
    },
  ),
  "vit": lambda quick: dict(
    base="configs/vit.py:sp",
    fixed={
      "model.width": 32 if quick else 128,
      "model.depth": 2 if quick else 4,
      "model.num_heads": 2 if quick else 4,
      "model.patch_size": 7,
      "batch_size": 32 if quick else 128,
    },
  ),
}
ARMS = {
  "optimizer.name": ["adamw", "stable_adamw", "adamw"],
  "optimizer.grad_clip_norm": [0.0, 0.0, 1.0],
}
LRS = [2.0**-k for k in range(8, 1, -1)]  # 2^-8 .. 2^-2


def get_sweep(arg: str = ""):
  words = arg.split(",") if arg else []
  models = [w for w in words if w in MODELS]
  if len(models) != 1 or set(words) - {"quick", *MODELS}:
    raise ConfigError("sweep preset", arg, ("[quick,]gpt", "[quick,]vit"))
  quick = "quick" in words
  model = MODELS[models[0]](quick)
  steps = 200 if quick else 2000
  return dict(
    base=model["base"],
    fixed={
      **model["fixed"],
      "model.base_width": model["fixed"]["model.width"],
      "steps": steps,
      "optimizer.schedule": "warmup_cosine",
      "optimizer.weight_decay": 0.0,
      "optimizer.clip_threshold": 1.0,
      "log_every": 25,  # every step is logged; fetched in blocks of 25
      "eval_every": steps,
      "eval_batches": 8,
      "max_nonfinite": 5,
      "checkpoint_every": 10**6,
      "plots": False,  # ~1 s a run, 756 runs
    },
    axes=[
      ARMS,
      {"optimizer.warmup_steps": [0, steps // 10]},
      {"seed": [0, 1, 2]},
      {"optimizer.b2": [0.95, 0.99, 0.999]},
      {"optimizer.learning_rate": LRS},
    ],
    metric="eval_loss",
  )
