import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim
from adamlab.errors import ConfigError
from adamlab.train import optimizer
from tests.train.test_optimizer import build, config

SHAPE = (4, 3)


def reference(losses, grad_norms, k, window, metric, max_in_row):
  """Skip decisions of "skip bad steps", from the rule itself: a Python list of the
  values accepted so far; a step is a spike when a monitored value is above mean + k *
  std (population) of the last `window` of them. A non-finite loss or gradient norm is
  skipped apart: (spike, nonfinite) per step."""
  names = ["loss", "grad_norm"] if metric == "both" else [metric]
  accepted = {n: [] for n in names}
  in_row, skipped, margin = 0, [], np.inf
  for loss, grad_norm in zip(losses, grad_norms):
    value = {"loss": loss, "grad_norm": grad_norm}
    finite = np.isfinite(loss) and np.isfinite(grad_norm)  # (the loss is always passed)
    spike = False
    if finite and len(accepted[names[0]]) >= window:
      for n in names:
        last = np.array(accepted[n][-window:], np.float64)
        bar = last.mean() + k * last.std()
        spike = spike or value[n] > bar
        margin = min(margin, abs(value[n] - bar) / abs(bar))
    spike = spike and not (max_in_row > 0 and in_row >= max_in_row)
    if finite and not spike:
      for n in names:
        accepted[n].append(value[n])
    in_row = in_row + 1 if spike else (in_row if not finite else 0)
    skipped.append((bool(spike), not finite))
  return skipped, margin


def sequence(steps=60, seed=0):
  """Losses and gradients with spikes (not at the same steps), a NaN loss, and lasting
  jumps of the loss level at step 40 and of the gradient norm at step 50 (which plain
  skipping never gets over)."""
  rng = np.random.default_rng(seed)
  losses = 2.0 - np.linspace(0, 0.5, steps) + 0.05 * rng.standard_normal(steps)
  losses[[14, 22, 23]] += [1.5, 2.0, 1.2]
  losses[31] = np.nan
  losses[40:] += 1.0
  grads = [
    g / np.linalg.norm(g) * (1 + 0.05 * rng.standard_normal())
    for g in rng.standard_normal((steps,) + SHAPE)
  ]
  for t, factor in [(18, 6.0), (23, 4.0), (35, 5.0), (36, 8.0)] + [
    (t, 3.0) for t in range(50, steps)
  ]:
    grads[t] = factor * grads[t]
  grads = [g.astype(np.float32) for g in grads]
  losses = losses.astype(np.float32)
  grad_norms = [float(np.linalg.norm(g.astype(np.float64))) for g in grads]
  return losses, grads, grad_norms


@pytest.mark.parametrize("metric", ["loss", "grad_norm", "both"])
@pytest.mark.parametrize("max_in_row", [0, 3])
def test_matches_reference_step_by_step(metric, max_in_row):
  k, window = 3.0, 8
  losses, grads, grad_norms = sequence()
  decisions, margin = reference(losses, grad_norms, k, window, metric, max_in_row)
  assert margin > 1e-5  # no decision is a float32 rounding away from the other side
  spikes = [spike for spike, _ in decisions]
  want = [spike or nonfinite for spike, nonfinite in decisions]
  assert sum(spikes) >= 2 and not any(spikes[:window])  # spikes are skipped, none too early
  assert [t for t, (_, nonfinite) in enumerate(decisions) if nonfinite] == [31]  # the NaN

  inner = optax.adam(0.1)
  tx = optim.skip_spikes(inner, k, window, metric, max_in_row)
  params = jnp.zeros(SHAPE)
  state = tx.init(params)
  alone, alone_state = inner, inner.init(params)  # the inner optimizer fed accepted steps only
  step, alone_step = jax.jit(tx.update), jax.jit(alone.update)
  for t, (loss, g) in enumerate(zip(losses, grads)):
    updates, state = step(jnp.asarray(g), state, params, loss=loss)
    stats = optim.skip_stats(state)
    assert bool(stats["spike_skipped"]) == want[t], f"step {t}"
    assert int(stats["spike_skips"]) == sum(spikes[: t + 1]), f"step {t}"
    assert int(stats["nonfinite_skips"]) == int(t >= 31), f"step {t}"
    if want[t]:
      np.testing.assert_array_equal(updates, np.zeros(SHAPE))
    else:
      expected, alone_state = alone_step(jnp.asarray(g), alone_state, params)
      np.testing.assert_allclose(updates, expected, rtol=1e-5, atol=1e-8, err_msg=f"step {t}")
  jump = 50 if metric == "grad_norm" else 40  # where the monitored level moves for good
  if max_in_row == 0:
    assert all(want[jump:])  # frozen for good
  else:
    assert not all(want[jump:])  # it caught up, after max_in_row skips
    assert max(map(len, "".join(".x"[w] for w in spikes).split("."))) == max_in_row


def test_inner_state_unchanged_on_a_skipped_step():
  tx = optim.skip_spikes(optax.adam(0.1), k=2.0, window=4, metric="loss")
  params = jnp.ones(SHAPE)
  state = tx.init(params)
  g = jnp.full(SHAPE, 0.5)
  for loss in (1.0, 1.1, 0.9, 1.05):
    _, state = tx.update(g, state, params, loss=loss)
  before = state
  updates, state = tx.update(10 * g, state, params, loss=5.0)
  assert bool(state.skipped) and int(state.skips) == 1 and int(state.in_row) == 1
  np.testing.assert_array_equal(updates, np.zeros(SHAPE))
  adam = state.inner_state[0]
  assert int(adam.count) == 4
  for got, old in zip(jax.tree.leaves(state.inner_state), jax.tree.leaves(before.inner_state)):
    np.testing.assert_array_equal(got, old)
  np.testing.assert_array_equal(state.windows["loss"], before.windows["loss"])
  assert int(state.accepted) == int(before.accepted) == 4
  # The next ordinary step is accepted and advances Adam again.
  _, state = tx.update(g, state, params, loss=1.0)
  assert not bool(state.skipped) and int(state.in_row) == 0 and int(state.inner_state[0].count) == 5


def test_missing_loss_and_bad_arguments():
  tx = optim.skip_spikes(optax.sgd(0.1), 2.0, 4)
  with pytest.raises(ValueError, match="loss="):
    tx.update(jnp.ones(3), tx.init(jnp.ones(3)), jnp.ones(3))
  # grad_norm needs no loss.
  tx = optim.skip_spikes(optax.sgd(0.1), 2.0, 4, metric="grad_norm")
  u, _ = tx.update(jnp.ones(3), tx.init(jnp.ones(3)), jnp.ones(3))
  np.testing.assert_allclose(u, -0.1 * np.ones(3))
  for kwargs in (dict(metric="gradnorm"), dict(window=1), dict(max_in_row=-1)):
    with pytest.raises(ValueError):
      optim.skip_spikes(optax.sgd(0.1), **{"k": 2.0, "window": 4, **kwargs})


def test_skip_stats_through_wrappers():
  p = jnp.ones(3)
  assert optim.skip_stats(optax.adam(0.1).init(p)) is None
  tx = optax.chain(optax.scale(1.0), optim.skip_spikes(optax.adam(0.1), 2.0, 4))
  stats = optim.skip_stats(tx.init(p))
  assert stats["spike_skips"].dtype == jnp.int32 and stats["spike_skipped"].dtype == jnp.bool_


def test_jit_and_vmap_over_two_runs_match_each_run_alone():
  k, window, max_in_row = 2.0, 5, 2
  tx = optim.skip_spikes(optax.adam(0.1), k, window, "both", max_in_row)
  params = jnp.zeros(SHAPE)
  losses, grads, _ = sequence(seed=1)
  other = losses[::-1].copy()  # the second run spikes at other steps
  other = np.where(np.isnan(other), 1.0, other).astype(np.float32)
  runs = [(losses, grads), (other, [g[::-1] for g in grads])]

  traces = []

  def update(g, s, loss):
    traces.append(1)
    return tx.update(g, s, params, loss=loss)

  alone = jax.jit(update)
  packed = jax.jit(jax.vmap(update))
  states = [tx.init(params), tx.init(params)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  for t in range(len(losses)):
    outs = [alone(jnp.asarray(runs[i][1][t]), states[i], runs[i][0][t]) for i in range(2)]
    states = [s for _, s in outs]
    u2, stacked = packed(
      jnp.stack([jnp.asarray(r[1][t]) for r in runs]), stacked, jnp.asarray([r[0][t] for r in runs])
    )
    for i in range(2):
      np.testing.assert_allclose(u2[i], outs[i][0], rtol=1e-6, err_msg=f"step {t} run {i}")
      for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(states[i])):
        np.testing.assert_allclose(a[i], b, rtol=1e-6, err_msg=f"step {t} run {i}")
  skips = [int(s.skips) for s in states]
  assert min(skips) > 0 and skips[0] != skips[1]  # both runs skipped, not in lockstep
  assert len(traces) == 2  # one trace each: the states keep their shapes and dtypes
  assert states[0].windows["loss"].dtype == jnp.float32


@pytest.mark.parametrize(
  "field,value",
  [
    ("skip_spikes_metric", "gradnorm"),
    ("skip_spikes_k", -1.0),
    ("skip_spikes_k", float("nan")),
    ("skip_spikes_window", 1),
    ("skip_spikes_window", 0),
    ("skip_spikes_max_in_row", -1),
  ],
)
def test_bad_config_raises_config_error(field, value):
  with pytest.raises(ConfigError, match=f"optimizer.{field}"):
    optimizer.validate(config(**{field: value}).optimizer)


def test_build_wraps_outermost_only_when_on():
  p = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
  off = build(config(), p)
  assert optim.skip_stats(off.init(p)) is None
  assert isinstance(off, optax.GradientTransformationExtraArgs)
  on = build(config(skip_spikes_k=3.0, skip_spikes_window=4, skip_spikes_metric="grad_norm"), p)
  state = on.init(p)
  assert isinstance(state, optim.SkipSpikesState)  # outermost, around the global-norm clip
  assert isinstance(state.inner_state[0], optax.ClipByGlobalNormState)
  # The wrapper monitors the raw gradients: a spike is caught although clipping would
  # have cut it down to norm 1.
  g = {"w": jnp.full((4, 3), 0.1), "b": jnp.full(3, 0.1)}
  for _ in range(4):
    _, state = on.update(g, state, p, loss=1.0)
  updates, state = on.update(jax.tree.map(lambda x: 100 * x, g), state, p, loss=1.0)
  assert bool(state.skipped)
  assert all(not np.any(u) for u in jax.tree.leaves(updates))


def test_trainer_logs_spike_skips(tmp_path):
  from adamlab.train.config import base
  from adamlab.train import train

  c = base("mlp")
  c.data.name = "fashion_mnist"
  c.model.update(dict(width=16, base_width=16))
  c.optimizer.update(
    dict(
      name="adamw",
      learning_rate=3e-3,
      warmup_steps=0,
      schedule="constant",
      skip_spikes_k=0.5,
      skip_spikes_window=4,
      skip_spikes_max_in_row=2,
    )
  )
  c.update(
    dict(steps=24, batch_size=16, log_every=1, eval_every=24, eval_batches=0, checkpoint_every=100)
  )
  train.run(c, str(tmp_path), log=lambda *_: None)
  rows = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
  assert len(rows) == 24
  skipped = np.array([r["spike_skipped"] for r in rows])
  skips = np.array([r["spike_skips"] for r in rows])
  # k = 0.5 over a window of 4 noisy minibatch losses: some steps are skipped.
  assert skips[-1] > 0 and not skipped[:4].any()
  np.testing.assert_array_equal(skips, np.cumsum(skipped))
  for prev, row in zip(rows, rows[1:]):
    if row["spike_skipped"]:  # a skipped step leaves the params where they were
      assert row["update_rms"] == 0 and row["param_norm"] == prev["param_norm"]
    else:
      assert row["update_rms"] > 0
  # never more than max_in_row = 2 skips in a row
  assert max(map(len, "".join(".x"[int(s)] for s in skipped).split("."))) <= 2


def _micro_steps(n=24, seed=3):
  """Losses and gradients of micro-steps, one loss spike and one gradient spike."""
  rng = np.random.default_rng(seed)
  losses = (2.0 - 0.01 * np.arange(n)).astype(np.float32)  # falling: never above the bar
  grads = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]
  losses[15] = 5.0
  grads[19] = 50.0 * grads[19]
  return losses, grads


def test_outside_multisteps_each_micro_step_is_judged_and_skipped_ones_not_accumulated():
  losses, grads = _micro_steps()
  tx = optim.skip_spikes(optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2), 3.0, 4)
  params = jnp.zeros(SHAPE)
  state = tx.init(params)
  skipped = []
  for loss, g in zip(losses, grads):
    u, state = tx.update(jnp.asarray(g), state, params, loss=loss)
    params = optax.apply_updates(params, u)
    skipped.append(bool(state.skipped))
  assert [t for t, s in enumerate(skipped) if s] == [15]  # the loss spike's micro-step alone
  # The same as MultiSteps fed only the accepted micro-steps: every update averages
  # two accepted ones.
  alone = optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2)
  want, alone_state = jnp.zeros(SHAPE), alone.init(jnp.zeros(SHAPE))
  for t, g in enumerate(grads):
    if t != 15:
      u, alone_state = alone.update(jnp.asarray(g), alone_state, want)
      want = optax.apply_updates(want, u)
  np.testing.assert_array_equal(params, want)


def test_inside_multisteps_it_judges_the_averaged_gradient():
  losses, grads = _micro_steps()
  inner = lambda: optim.skip_spikes(optax.sgd(0.1), 3.0, 4, metric="grad_norm")
  tx = optax.MultiSteps(inner(), every_k_schedule=2)
  params = jnp.zeros(SHAPE)
  state = tx.init(params)
  for loss, g in zip(losses, grads):
    u, state = tx.update(jnp.asarray(g), state, params, loss=loss)
    params = optax.apply_updates(params, u)
  # The same as skip_spikes fed the averages of micro-step pairs directly.
  direct, want = inner(), jnp.zeros(SHAPE)
  direct_state = direct.init(want)
  decisions = []
  for t in range(0, len(grads), 2):
    mean = (jnp.asarray(grads[t]) + jnp.asarray(grads[t + 1])) / 2
    u, direct_state = direct.update(mean, direct_state, want, loss=losses[t + 1])
    want = optax.apply_updates(want, u)
    decisions.append(bool(direct_state.skipped))
  assert decisions.count(True) == 1 and decisions.index(True) == 9  # micro-steps 18 and 19
  np.testing.assert_allclose(params, want, rtol=1e-6, atol=1e-7)  # (the mean's rounding)
  assert int(optim.skip_stats(state)["spike_skips"]) == 1
