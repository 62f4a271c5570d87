"""Coordinate check (Tensor Programs V): GPT activations vs width, SP vs muP.

Runs `adamlab coordcheck` for each parametrization: a few Adam steps at several widths
on one fixed batch, recording the RMS of every layer's output. Under muP the
sizes stay flat in width (slope ~0 on log-log axes) once the updates dominate; under SP
(one global lr) the residual stream, attention logits and output logits grow with
width after a step.

    python scripts/coordcheck.py --quick     # widths 64-512, 3 steps
    python scripts/coordcheck.py             # widths 128-2048, 5 steps
"""

import os
import subprocess
import sys

import common
from adamlab.analysis import coords

LR = 1e-2  # large enough that one Adam step moves every layer visibly


def main():
  args = common.parse("coordcheck", __doc__)
  widths, steps = ("64,128,256,512", 3) if args.quick else ("128,256,512,1024,2048", 5)
  found = {}
  # SP as in the paper: one global lr (per_layer_lr=True would make it Everett's
  # "SP + per-layer lr", which is width-stable too).
  for p, per_layer in (("sp", False), ("mup", True)):
    out = os.path.join(args.out, p)
    cmd = [
      sys.executable,
      "-m",
      "adamlab",
      "coordcheck",
      "--config",
      f"configs/gpt.py:{p},adamw",
      "--widths",
      widths,
      "--steps",
      str(steps),
      "--out",
      out,
      f"--config.model.base_width={widths.split(',')[0]}",
      f"--config.optimizer.learning_rate={LR}",
      "--config.optimizer.warmup_steps=0",
      "--config.optimizer.schedule=constant",
      f"--config.optimizer.per_layer_lr={per_layer}",
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=common.REPO)
    rows = coords.read_csv(os.path.join(out, "coords.csv"))
    found[p] = {s: coords.slopes(rows, s) for s in sorted({r["step"] for r in rows})}
  layers = sorted(found["mup"][steps])
  table = [
    dict(layer=l, **{f"{p} step {s}": found[p][s][l] for p in found for s in (0, steps)})
    for l in layers
  ]
  worst = {p: max(abs(v) for v in found[p][steps].values()) for p in found}
  common.write_numbers(
    args,
    "Coordinate check: GPT, Adam, SP vs muP",
    [
      f"Slope of log2 RMS against log2 width (widths {widths}, lr {LR}, "
      "Adam, one fixed batch), at init and after the last step. 0 = width-independent; "
      "+0.5 = grows like sqrt(width); +1 = like width.",
      "",
      *common.table(list(table[0]), table),
      "",
      *[f"- {p}: largest |slope| after {steps} steps: **{worst[p]:.2f}**" for p in found],
      "",
      "Plots: sp/coordcheck.png, mup/coordcheck.png.",
    ],
  )


if __name__ == "__main__":
  main()
