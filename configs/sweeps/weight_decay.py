"""Weight decay across width and training length (seed 004; Wang and Aitchison 2024).

muP AdamW on the TP5 MLP and a Fashion-MNIST subset small enough to overfit, so the
held-out loss has an optimal decay. Presets:
- `base`: the base width at T and 4T steps, lambda in `coupled` mode. At the base
  width every lr multiplier is 1, so the four modes are one optimizer there, with
  lambda rescaled (scripts/weight_decay.py converts these runs into each mode's lambda).
- `coupled`, `independent`, `width_scaled`, `timescale`: the wider models at T steps in
  that `optimizer.weight_decay_mode`, over the mode's own grid.
lambda (tau in timescale mode) is the innermost axis, so a cell's grid trains as one
vmapped pack. `python scripts/weight_decay.py --quick` runs all five and draws the figures.
"""

MODES = ("coupled", "independent", "width_scaled", "timescale")
LR = 2.0 ** -7  # muP AdamW's optimal lr at width 64 in experiments/exponents (quick)

# log2 of each grid. base: coupled lambda at the base width, T and 4T. A mode's grid
# covers the same per-step decays as the base grid's middle (coupled and width_scaled:
# lr * lambda; independent: lambda; timescale: 1 / (tau T)); coupled's reaches higher,
# since under muP its hidden decay per step shrinks as 1 / width.
BASE_GRID = range(-6, 5)
GRIDS = {"coupled": range(-4, 7), "width_scaled": range(-4, 5),
         "independent": range(-10, -2), "timescale": range(-5, 4)}


def shape(quick: bool) -> dict:
  return dict(widths=[32, 128, 512] if quick else [256, 1024, 4096],
              steps=256 if quick else 2048, seeds=[0, 1] if quick else [0, 1, 2])


def axes(quick: bool, preset: str) -> list:
  s = shape(quick)
  if preset == "base":
    cells = {"model.width": [s["widths"][0]] * 2, "steps": [s["steps"], 4 * s["steps"]]}
  else:
    cells = {"model.width": s["widths"][1:], "steps": [s["steps"]] * (len(s["widths"]) - 1)}
  field = "optimizer.weight_decay" + ("_timescale" if preset == "timescale" else "")
  # lambda = 0 in coupled runs: the no-decay reference of every mode (an independent
  # lambda of 0 cannot share a pack with decayed runs: its optimizer state differs)
  zero = [0.0] if preset in ("base", "coupled") else []
  swept = {field: zero + [2.0 ** k for k in (BASE_GRID if preset == "base" else GRIDS[preset])]}
  return [{"seed": s["seeds"]}, cells, swept]


def get_sweep(arg: str = ""):
  presets = set(filter(None, arg.split(",")))
  quick = "quick" in presets
  preset = next((p for p in ("base",) + MODES if p in presets), "base")
  s = shape(quick)
  fixed = {"batch_size": 32, "log_every": 16, "model.base_width": s["widths"][0],
           "parametrization": "mup", "optimizer.learning_rate": LR,
           "optimizer.weight_decay_mode": "coupled" if preset == "base" else preset,
           "optimizer.schedule": "warmup_cosine", "optimizer.warmup_steps": 16,
           "optimizer.grad_clip_norm": 0.0,  # global clipping would rescale lr with width
           "data.train_size": 1024,  # a subset the model overfits, so decay matters
           "max_nonfinite": 2, "eval_every": 10 ** 6, "eval_batches": 64,
           "checkpoint_every": 10 ** 6}
  ax = axes(quick, preset)
  return dict(base="configs/mlp.py:adamw", fixed=fixed, axes=ax, best_of=next(iter(ax[2])),
              metric="eval_loss")
