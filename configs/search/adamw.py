"""AdamW coordinate-descent search (seed 004): GPT on GCIDE, three model x data scales.

    adamlab search --config configs/search/adamw.py:quick --workdir searches/adamw --pack 4

The grids are the seed's example table (warmup scaled to these run lengths); the
baseline is its near-optimal setting (wd 0.1, b1 0.9, b2 0.95, clip 1.0). The scales
are (width, steps): a base, 2x the data, 2x the width, as in the seed.
"""


def get_search(arg: str = ""):
  quick = arg == "quick"
  width, steps = (32, 60) if quick else (256, 2000)
  return dict(
    base="configs/gpt.py:sp,adamw",
    fixed={
      "model.base_width": width,
      "model.depth": 2,
      "model.num_heads": 4,
      "model.seq_len": 32 if quick else 256,
      "batch_size": 16 if quick else 64,
      "eval_batches": 4,
      "log_every": 20 if quick else 100,
      "checkpoint_every": 10**6,
      "max_nonfinite": 3,
    },
    scales=[
      {"model.width": width, "steps": steps},
      {"model.width": width, "steps": 2 * steps},
      {"model.width": 2 * width, "steps": steps},
    ],
    space={
      "optimizer.learning_rate": (
        [4e-3, 8e-3, 1.6e-2, 3.2e-2] if quick else [1e-3, 2e-3, 4e-3, 8e-3]
      ),
      "optimizer.final_lr_ratio": [0.0, 0.05, 0.1],
      "optimizer.warmup_steps": [5, 10, 20] if quick else [100, 200, 400, 800],
      "optimizer.b1": [0.9, 0.95, 0.98] if quick else [0.9, 0.95, 0.98, 0.99],
      "optimizer.weight_decay": [0.0, 0.05, 0.1, 0.2],
      "optimizer.b2": [0.9, 0.95, 0.98, 0.99],
      "optimizer.eps": [1e-10, 1e-20, 1e-30],
      "optimizer.grad_clip_norm": [0.0, 0.5, 1.0],
    },
    baseline={
      "optimizer.learning_rate": 8e-3 if quick else 2e-3,
      "optimizer.final_lr_ratio": 0.1,
      "optimizer.warmup_steps": 10 if quick else 200,
      "optimizer.b1": 0.9,
      "optimizer.weight_decay": 0.1,
      "optimizer.b2": 0.95,
      "optimizer.eps": 1e-10,
      "optimizer.grad_clip_norm": 1.0,
    },
    metric="eval_loss",
    max_passes=2 if quick else 3,
    sensitivity=0.01,
  )
