"""Edge of stability (Cohen et al. 2021; seed 003): sharpness under full-batch GD.

The TP5 MLP (SP) on a fixed subset of Fashion-MNIST, trained by full-batch gradient
descent at several learning rates. Every few steps the sharpness (top Hessian
eigenvalue, power iteration on Hessian-vector products) is compared with the
stability limit 2 / lr: it rises (progressive sharpening) until it reaches 2 / lr and
then hovers there. One more run takes the largest lr with a linear warmup, under
which the limit starts high and comes down to meet the sharpness.

Full-batch GD and Hessians are not what the trainer does, so this script runs its own
short loop on adamlab's model, data and analysis.

    python scripts/edge_of_stability.py --quick    # 1000 examples, 2 CPU cores
    python scripts/edge_of_stability.py            # 5000 examples, longer
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import common
from adamlab import data
from adamlab.analysis import hessian
from adamlab.config import load
from adamlab.models.build import build, functional
from adamlab.models.loss import objective

REPO = common.REPO


def loss_function(config, apply, inputs, labels, kind):
  """The full-batch loss: "mse" on one-hot targets (Cohen et al.'s main setting, where
  sharpness does not fall as the loss goes to 0) or "ce" (cross-entropy)."""
  if kind == "ce":
    full = objective(config, apply)
    return lambda p: full(p, inputs, labels)[0]
  targets = jax.nn.one_hot(labels, config.model.num_classes)
  return lambda p: 0.5 * jnp.mean(jnp.sum((apply(p, inputs) - targets) ** 2, axis=-1))


def run(config, inputs, labels, lr, steps, every, warmup=0, kind="mse"):
  """Full-batch GD; returns rows (step, lr, loss, sharpness) every `every` steps."""
  model, _ = build(config, jax.random.PRNGKey(config.seed))
  apply, params = functional(model)
  loss_fn = loss_function(config, apply, inputs, labels, kind)  # one object: compiled once

  @jax.jit
  def step(params, lr_t):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return jax.tree.map(lambda p, g: p - lr_t * g, params, grads), loss

  rows, v = [], params
  for t in range(steps + 1):
    lr_t = lr * min(1.0, (t + 1) / warmup) if warmup else lr
    if t % every == 0 or t == steps:
      sharp, _, v = hessian.power_iteration(loss_fn, params, v, iters=30, tol=1e-3)
      rows.append(dict(step=t, lr=lr_t, loss=float(loss_fn(params)), sharpness=sharp))
      if not np.isfinite(rows[-1]["loss"]):
        break
    if t < steps:
      params, _ = step(params, lr_t)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--loss", choices=("mse", "ce"), default="mse")
  args = p.parse_args()
  mode = "quick" if args.quick else "full"
  out = os.path.join(REPO, "experiments", "edge_of_stability", mode)
  os.makedirs(out, exist_ok=True)
  n, steps, every = (2000, 2000, 20) if args.quick else (5000, 5000, 50)
  config, _ = load(["--config=" + os.path.join(REPO, "configs", "mlp.py"),
                    "--config.model.width=128", "--config.model.base_width=128",
                    f"--config.batch_size={n}"])
  inputs, labels = data.Source(config).batch(0)  # a fixed random subset: the full batch
  lrs = [0.01, 0.02, 0.04, 0.08]  # 2/lr = 200, 100, 50, 25; the sharpness at init is ~90
  runs = {f"lr {lr}": run(config, inputs, labels, lr, steps, every, kind=args.loss) for lr in lrs}
  warm = steps // 5
  runs[f"lr {lrs[-1]}, warmup {warm}"] = run(config, inputs, labels, lrs[-1], steps, every, warm,
                                             args.loss)
  plot(runs, os.path.join(out, "edge_of_stability.png"))
  summary = []
  for name, rows in runs.items():
    s = hessian.edge_summary([r["step"] for r in rows], [r["sharpness"] for r in rows],
                             [r["lr"] for r in rows])
    summary.append(dict(run=name, start_sharpness=rows[0]["sharpness"], **s,
                        final_loss=rows[-1]["loss"], final_step=rows[-1]["step"]))
  with open(os.path.join(out, "runs.json"), "w") as f:
    json.dump(runs, f, indent=1)
  lines = [f"# Edge of stability: MLP width 128, full-batch GD on {n} Fashion-MNIST images, "
           f"{args.loss} loss ({mode})", "",
           "first: the first measured step with sharpness >= 0.9 * 2/lr; max_ratio: the "
           "largest sharpness * lr / 2 up to then; after_median / after_within: the median of "
           "that ratio from then on, and the fraction of measurements within 10% of 1.", "",
           *common.table(list(summary[0]), summary)]
  with open(os.path.join(out, "numbers.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def plot(runs, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
  for c, (name, rows) in zip(colors, runs.items()):
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["sharpness"] for r in rows], color=c, label=name)
    ax.plot(steps, [2 / r["lr"] for r in rows], color=c, ls="--", lw=0.8)
    bx.plot(steps, [r["loss"] for r in rows], color=c, label=name)
  ax.set_yscale("log")
  ax.set_ylim(top=4 * max(2 / rows[-1]["lr"] for rows in runs.values()))
  ax.set(xlabel="step", ylabel="sharpness (dashed: 2 / lr)")
  bx.set(xlabel="step", ylabel="training loss (full batch)", yscale="log")
  bx.legend(fontsize=7)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
