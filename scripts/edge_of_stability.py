"""Edge of stability (Cohen et al. 2021; seed 003): sharpness under full-batch GD.

The TP5 MLP (SP) on a fixed subset of Fashion-MNIST, trained by full-batch gradient
descent at several learning rates. Every few steps the sharpness (top Hessian
eigenvalue, power iteration on Hessian-vector products) is compared with the
stability limit 2 / lr: it rises (progressive sharpening) until it reaches 2 / lr and
then hovers there. One more run takes the largest lr with a linear warmup, under
which the limit starts high and comes down to meet the sharpness.

Adam (Cohen et al. 2022, "Adaptive Gradient Methods at the Edge of Stability"): the
TP5 MLP (width 256, SP) on the first 1024 Fashion-MNIST training images, full-batch
Adam (lr 1e-3, b1 0.9, b2 0.95, eps 1e-8, constant lr, no clipping or weight decay), a
regime with loss spikes. Every few steps, and at the steps just before each detected
loss spike, the preconditioned sharpness (top eigenvalue of P^-1/2 H P^-1/2, P =
sqrt(v_hat) + eps from the optimizer's state) is compared with Adam's limit
(2 + 2 b1) / ((1 - b1) lr) = 38 / lr. It runs at eps 1e-8, 1e-7 and 1e-6: P >= eps bounds
the preconditioned sharpness by lam_H / eps (lam_H: the Hessian's own top eigenvalue,
measured every 100 steps), so eps > lr (1 - b1) lam_H / (2 + 2 b1)
(`hessian.stable_eps`) keeps Adam under its limit whatever v does.

Full-batch GD, full-batch Adam and Hessians are not what the trainer does, so this
script runs its own short loops on adamlab's model, data and analysis. The Adam part is
the same in both modes (its flags set it).

    python scripts/edge_of_stability.py --quick    # 2000 examples (GD), 2 CPU cores
    python scripts/edge_of_stability.py            # 5000 examples (GD), longer
"""

import argparse
import collections
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import common
from adamlab import data
from adamlab.analysis import hessian, spikes
from adamlab.data.download import data_dir
from adamlab.data.images import load_fashion_mnist
from adamlab.train.config import load
from adamlab.models import functional
from adamlab.train.optimizer import build_model
from adamlab.models.task import task

REPO = common.REPO


def loss_function(config, apply, inputs, labels, kind):
  """The full-batch loss: "mse" on one-hot targets (Cohen et al.'s main setting, where
  sharpness does not fall as the loss goes to 0) or "ce" (cross-entropy)."""
  if kind == "ce":
    full = task(config.model).objective(apply)
    return lambda p: full(p, inputs, labels)[0]
  targets = jax.nn.one_hot(labels, config.model.num_classes)
  return lambda p: 0.5 * jnp.mean(jnp.sum((apply(p, inputs) - targets) ** 2, axis=-1))


def run(config, inputs, labels, lr, steps, every, warmup=0, kind="mse"):
  """Full-batch GD; returns rows (step, lr, loss, sharpness) every `every` steps."""
  model, _ = build_model(config, jax.random.PRNGKey(config.seed))
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


def adam_run(
  config,
  inputs,
  labels,
  seed,
  lr,
  b1,
  b2,
  eps,
  steps,
  every,
  before=(8, 4, 2, 1),
  k=2.0,
  window=20,
  raw_every=100,
):
  """Full-batch Adam from init seed `seed`; returns (per-step losses, spike events, rows).

  rows (step, loss, sharpness, threshold, why, iters: power iterations used, floor: the
  fraction of coordinates with sqrt(v_hat) < eps, and every `raw_every` steps raw: the
  Hessian's own top eigenvalue) are the measurements of the preconditioned sharpness:
  every `every` steps and at the last step ("every") and, when a loss spike is detected at step t (`spikes.detect(loss, k, window)`
  on the losses so far: causal, so it can run online), at t - d for d in `before`
  ("before") and at t itself ("spike"). The params and optimizer states of the last
  max(before) steps are kept for that. At step t, P is the preconditioner of the update
  taken from the params of step t (the state after the update computed there: its nu
  includes the gradient at those params).
  """
  model, _ = build_model(config, jax.random.PRNGKey(seed))
  apply, params = functional(model)
  loss_fn = loss_function(config, apply, inputs, labels, "ce")
  opt = optax.adam(lr, b1, b2, eps)  # constant lr, no clipping, no weight decay
  state = opt.init(params)
  threshold = float(hessian.adam_threshold(lr, b1))

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  v, v_raw, losses, events, rows, done = params, params, [], [], [], set()
  recent = collections.deque(maxlen=max(before) + 1)  # (t, params_t, state after update at t)

  def measure(t, p, st, why):
    nonlocal v, v_raw
    if t in done:
      return
    done.add(t)
    pre = hessian.adam_preconditioner(st[0].nu, st[0].count, b2, eps)
    lam, used, v = hessian.power_iteration(loss_fn, p, v, iters=20, tol=1e-2, precond=pre)
    rows.append(
      dict(step=t, loss=losses[t], sharpness=lam, threshold=threshold, why=why, iters=used)
    )
    rows[-1]["floor"] = _floor_fraction(pre, eps)
    if why == "every" and t % raw_every == 0:
      rows[-1]["raw"], _, v_raw = hessian.power_iteration(loss_fn, p, v_raw, iters=20, tol=1e-2)

  for t in range(steps):
    new_params, new_state, loss = step(params, state)
    losses.append(float(loss))
    recent.append((t, params, new_state))
    if t % every == 0 or t == steps - 1:
      measure(t, params, new_state, "every")
    # detect() on the last window + 2 losses flags t iff t starts an event of the whole series.
    if spikes.detect(losses[-(window + 2) :], k, window)[-1:] == [min(t, window + 1)]:
      events.append(t)
      for t0, p, st in recent:
        if t - t0 in before:
          measure(t0, p, st, "before")
      measure(t, params, new_state, "spike")
    if not np.isfinite(losses[-1]):
      break
    params, state = new_params, new_state
  rows.sort(key=lambda r: r["step"])
  return losses, events, rows


def _floor_fraction(precond, eps) -> float:
  """The fraction of coordinates whose P = sqrt(v_hat) + eps is below 2 eps."""
  leaves = jax.tree.leaves(precond)
  below = sum(float(jnp.sum(d < 2.0 * eps)) for d in leaves)
  return below / sum(d.size for d in leaves)


def adam_part(args):
  """The Adam runs over eps and seeds: {(eps, seed): dict(events, peaks, rows, summary, ...)}."""
  config, _ = load(["--config=" + os.path.join(REPO, "configs", "mlp.py")])  # width 256, SP
  images, labels = load_fashion_mnist(data_dir(""))["train"]
  inputs, labels = jnp.asarray(images[: args.subset]), jnp.asarray(labels[: args.subset])
  out = {}
  for eps in args.eps:
    for seed in args.seeds:
      start = time.time()
      losses, events, rows = adam_run(
        config, inputs, labels, seed, args.lr, args.b1, args.b2, eps, args.steps, args.every
      )
      out[eps, seed] = _adam_summary(args, np.asarray(losses), events, rows)
      out[eps, seed]["seconds"] = time.time() - start
      print(f"adam eps {eps:g} seed {seed}: {len(events)} spikes", flush=True)
  return out


def _adam_summary(args, loss, events, rows) -> dict:
  """One Adam run's spikes, jumps and its ratio at them, on the grid and before spikes."""
  peaks = [float(np.max(loss[t : t + args.peak_window])) for t in events]
  big = [t for t, pk in zip(events, peaks) if pk >= args.big]
  series = (
    [r["step"] for r in rows],
    [r["sharpness"] for r in rows],
    [r["threshold"] for r in rows],
  )
  grid = [r for r in rows if r["why"] == "every"]  # the regular grid: not denser near spikes
  late = [r for r in grid if r["step"] >= args.late]  # the memorized stretch
  assert events == spikes.detect(loss, 2.0, 20)  # the online detection is the offline one
  # The ratio just before a spike: at t - 1, since the loss of step t is already the jump's.
  return dict(
    events=events,
    peaks=peaks,
    rows=rows,
    loss=loss,
    summary=hessian.spike_summary(*series, [t - 1 for t in events]),
    big_summary=hessian.spike_summary(*series, [t - 1 for t in big]),
    grid=hessian.spike_summary(
      [r["step"] for r in grid], [r["sharpness"] for r in grid], [r["threshold"] for r in grid], []
    ),
    floor=float(np.median([r["floor"] for r in late])),
    late_max=max(r["sharpness"] / r["threshold"] for r in late),
    raw=[r["raw"] for r in late if "raw" in r],
    final_loss=float(loss[-1]),
  )


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--loss", choices=("mse", "ce"), default="mse", help="GD part's loss")
  a = p.add_argument_group("Adam part")
  a.add_argument("--lr", type=float, default=1e-3)
  a.add_argument("--b1", type=float, default=0.9)
  a.add_argument("--b2", type=float, default=0.95)
  a.add_argument("--eps", default="1e-8,1e-7,1e-6", help="comma-separated")
  a.add_argument("--steps", type=int, default=3000)
  a.add_argument("--subset", type=int, default=1024, help="the first N training images")
  a.add_argument("--seeds", default="0,1,2", help="init seeds, comma-separated")
  a.add_argument("--every", type=int, default=20, help="measure every N steps (and at spikes)")
  a.add_argument(
    "--big",
    type=float,
    default=0.1,
    help="a spike whose loss reaches this within 20 steps is a 'jump'",
  )
  args = p.parse_args()
  args.seeds = [int(x) for x in args.seeds.split(",")]
  args.eps = [float(x) for x in args.eps.split(",")]
  args.peak_window = 20
  args.late = 500  # "the memorized stretch": after the first loss drop
  start = time.time()
  mode = "quick" if args.quick else "full"
  out = os.path.join(REPO, "experiments", "edge_of_stability", mode)
  os.makedirs(out, exist_ok=True)
  n, steps, every = (2000, 2000, 20) if args.quick else (5000, 5000, 50)
  config, _ = load(
    [
      "--config=" + os.path.join(REPO, "configs", "mlp.py"),
      "--config.model.width=128",
      "--config.model.base_width=128",
      f"--config.batch_size={n}",
    ]
  )
  inputs, labels = data.source(config).batch(0)  # a fixed random subset: the full batch
  lrs = [0.01, 0.02, 0.04, 0.08]  # 2/lr = 200, 100, 50, 25; the sharpness at init is ~90
  runs = {f"lr {lr}": run(config, inputs, labels, lr, steps, every, kind=args.loss) for lr in lrs}
  warm = steps // 5
  runs[f"lr {lrs[-1]}, warmup {warm}"] = run(
    config, inputs, labels, lrs[-1], steps, every, warm, args.loss
  )
  gd_seconds = time.time() - start
  print(f"GD part: {gd_seconds:.0f} s", flush=True)
  adam = adam_part(args)
  plot(runs, adam, args, os.path.join(out, "edge_of_stability.png"))
  summary = []
  for name, rows in runs.items():
    s = hessian.edge_summary(
      [r["step"] for r in rows], [r["sharpness"] for r in rows], [r["lr"] for r in rows]
    )
    summary.append(
      dict(
        run=name,
        start_sharpness=rows[0]["sharpness"],
        **s,
        final_loss=rows[-1]["loss"],
        final_step=rows[-1]["step"],
      )
    )
  with open(os.path.join(out, "runs.json"), "w") as f:
    json.dump(
      dict(
        gd=runs,
        adam={
          f"eps {eps:g}, seed {seed}": dict(
            events=r["events"], peaks=r["peaks"], measured=r["rows"]
          )
          for (eps, seed), r in adam.items()
        },
      ),
      f,
      indent=None,
      separators=(",", ":"),
    )
  total = time.time() - start
  lines = [
    f"# Edge of stability: MLP width 128, full-batch GD on {n} Fashion-MNIST images, "
    f"{args.loss} loss ({mode})",
    "",
    "first: the first measured step with sharpness >= 0.9 * 2/lr; max_ratio: the "
    "largest sharpness * lr / 2 up to then; after_median / after_within: the median of "
    "that ratio from then on, and the fraction of measurements within 10% of 1.",
    "",
    *common.table(list(summary[0]), summary),
    "",
    *adam_lines(adam, args),
    "",
    f"Runtime: GD part {gd_seconds:.0f} s, Adam part {total - gd_seconds:.0f} s, "
    f"total {total:.0f} s.",
  ]
  with open(os.path.join(out, "numbers.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def adam_lines(adam, args):
  """numbers.md's Adam section: a table over seeds and one row per spike."""
  thr = float(hessian.adam_threshold(args.lr, args.b1))
  lines = [
    f"## Adam: MLP width 256, full batch, first {args.subset} Fashion-MNIST images, "
    f"cross-entropy, lr {args.lr:g}, b1 {args.b1:g}, b2 {args.b2:g}, "
    f"eps {', '.join(f'{e:g}' for e in args.eps)}, {args.steps} steps",
    "",
    f"ratio: preconditioned sharpness / ((2 + 2 b1) / ((1 - b1) lr)) = sharpness / {thr:g}. "
    f"Measured every {args.every} steps and at 8, 4, 2, 1 and 0 steps before each loss "
    "spike (`spikes.detect(loss, k=2.0, window=20)` on the per-step loss). "
    f"jump: a spike whose loss reaches >= {args.big:g} within 20 steps; the others are "
    "tiny rises that the relative detector also counts (from a loss of 0 to ~1e-9 in "
    "float32, or bumps of ~1e-4 while the loss falls after a jump). at_or_above: the "
    "fraction of spikes whose ratio one step before the spike is >= 0.9. On the "
    "regular grid only (every "
    f"{args.every} steps): grid_median, grid_max: of the ratio; grid_fraction: the fraction "
    "with ratio >= 0.9 (what at_or_above would be for spikes at random steps); "
    "first: the first grid step with ratio >= 0.9; crossings: grid steps where the "
    f"ratio goes from < 1 to >= 1. From step {args.late} on (the memorized stretch): "
    "late_max: the largest grid ratio; floor: the median fraction of coordinates with "
    "sqrt(v_hat) < eps; lam_H: the median and max of the Hessian's own top eigenvalue "
    "(every 100 steps); stable_eps: `hessian.stable_eps(max lam_H)`, the eps above which "
    "the preconditioned sharpness cannot reach the limit whatever v is (lam_H / 38000); "
    "unguarded: the fraction of those lam_H with stable_eps(lam_H) > eps, where the "
    "bound does not rule the instability out. capped: measurements whose power iteration hit its "
    "20 iterations before the 1e-2 tolerance.",
    "",
  ]
  cols = [
    "eps",
    "seed",
    "spikes",
    "jumps",
    "at_or_above",
    "jumps_at_or_above",
    "grid_fraction",
    "grid_median",
    "grid_max",
    "first",
    "crossings",
    "late_max",
    "floor",
    "lam_H_median",
    "lam_H_max",
    "stable_eps",
    "unguarded",
    "capped",
    "final_loss",
    "seconds",
  ]
  table = []
  for (eps, seed), r in adam.items():
    s, b, g = r["summary"], r["big_summary"], r["grid"]
    table.append(
      dict(
        eps=eps,
        seed=seed,
        spikes=len(r["events"]),
        jumps=sum(pk >= args.big for pk in r["peaks"]),
        at_or_above=s["at_or_above"],
        jumps_at_or_above=b["at_or_above"],
        grid_fraction=g["measured_fraction"],
        grid_median=g["median_ratio"],
        grid_max=g["max_ratio"],
        first=g["first"],
        crossings=len(g["crossings"]),
        late_max=r["late_max"],
        floor=r["floor"],
        lam_H_median=float(np.median(r["raw"])),
        lam_H_max=float(np.max(r["raw"])),
        stable_eps=float(hessian.stable_eps(np.max(r["raw"]), args.lr, args.b1)),
        unguarded=float(np.mean(hessian.stable_eps(r["raw"], args.lr, args.b1) > eps)),
        capped=sum(m["iters"] >= 20 for m in r["rows"]),
        final_loss=r["final_loss"],
        seconds=r["seconds"],
      )
    )
  lines += [
    *common.table(cols, table),
    "",
    "Per spike: the ratio at 8, 4, 2, 1 steps before and at the spike step (the "
    "measurement at the spike step uses the params whose loss jumped), the loss one step "
    "before and the peak loss within 20 steps.",
    "",
  ]
  per = _per_spike(adam)
  if per:
    lines += common.table(list(per[0]), per)
  return lines


def _per_spike(adam) -> list:
  """One row per loss spike: its ratio 8, 4, 2, 1 and 0 steps before, the loss one step
  before and the peak loss."""
  per = []
  for (eps, seed), r in adam.items():
    by_step = {m["step"]: m for m in r["rows"]}
    for t, pk in zip(r["events"], r["peaks"]):
      row = dict(eps=eps, seed=seed, step=t)
      for d in (8, 4, 2, 1, 0):
        m = by_step.get(t - d)
        row[f"ratio_t-{d}"] = m["sharpness"] / m["threshold"] if m else None
      row["loss_before"] = by_step[t - 1]["loss"] if t - 1 in by_step else None
      row["peak_loss"] = pk
      per.append(row)
  return per


def plot(runs, adam, args, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, 2, figsize=(10, 7.6))
  (ax, bx), (cx, dx) = axes
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
  for c, (name, rows) in zip(colors, runs.items()):
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["sharpness"] for r in rows], color=c, label=name)
    ax.plot(steps, [2 / r["lr"] for r in rows], color=c, ls="--", lw=0.8)
    bx.plot(steps, [r["loss"] for r in rows], color=c, label=name)
  ax.set_yscale("log")
  ax.set_ylim(top=4 * max(2 / rows[-1]["lr"] for rows in runs.values()))
  ax.set(xlabel="step", ylabel="sharpness (dashed: 2 / lr)", title="full-batch GD")
  bx.set(xlabel="step", ylabel="training loss (full batch)", yscale="log", title="full-batch GD")
  bx.legend(fontsize=7)
  ax.legend(fontsize=7)
  seed = args.seeds[0]
  colors = plt.cm.plasma(np.linspace(0, 0.8, len(args.eps)))
  thr = float(hessian.adam_threshold(args.lr, args.b1))
  for c, eps in zip(colors, args.eps):
    r = adam[eps, seed]
    rows = r["rows"]
    cx.plot([m["step"] for m in rows], [m["sharpness"] for m in rows], color=c, lw=0.9)
    raw = [m for m in rows if "raw" in m]
    cx.plot([m["step"] for m in raw], [m["raw"] / eps for m in raw], color=c, ls=":", lw=1.2)
    dx.plot(np.maximum(r["loss"], 1e-10), color=c, lw=0.6, label=f"eps {eps:g}")
    for t, pk in zip(r["events"], r["peaks"]):
      big = pk >= args.big
      cx.axvline(t, color=c, lw=0.8 if big else 0.4, ls="-" if big else ":", alpha=0.6)
      dx.plot([t], [max(pk, 1e-10)], "v" if big else ".", color=c, ms=5 if big else 3)
  cx.axhline(thr, color="k", ls="--", lw=1, label=f"38 / lr = {thr:g}")
  cx.set(
    xlabel="step",
    yscale="log",
    title=f"full-batch Adam, lr {args.lr:g}, b2 {args.b2:g}, seed {seed}",
    ylabel="preconditioned sharpness (solid)\nits cap lam_H / eps (dotted)",
  )
  dx.set(
    xlabel="step",
    ylabel="training loss (full batch; floor 1e-10)",
    yscale="log",
    title="markers: peak loss of each spike (colours: eps)",
  )
  cx.legend(fontsize=7)
  dx.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
