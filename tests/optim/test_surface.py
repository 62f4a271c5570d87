"""The public surface of adamlab.optim: imports, __all__, defaults, argument checks."""

import inspect
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim


def _top_modules(code: str) -> set:
  code += "; import sys; print(sorted({m.split('.')[0] for m in sys.modules}))"
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True
  ).stdout
  return set(eval(out))


def test_import_loads_only_jax_optax_numpy():
  # Whatever JAX, Optax and NumPy load themselves (absl among them) is allowed; beyond
  # that only adamlab and the standard library.
  extra = _top_modules("from adamlab import optim") - _top_modules("import jax, optax, numpy")
  assert extra - set(sys.stdlib_module_names) == {"adamlab"}
  adamlab = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys; from adamlab import optim; print(sorted(m for m in "
      "sys.modules if m.startswith('adamlab')))",
    ],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert all(m == "adamlab" or m.startswith("adamlab.optim") for m in eval(adamlab))


def test_all_is_the_surface():
  public = {n for n in dir(optim) if not n.startswith("_")}
  modules = {n for n in public if inspect.ismodule(getattr(optim, n))}
  assert modules == {
    "aliases",
    "chain",
    "init",
    "parametrization",
    "schedules",
    "stable_adam",
    "state",
    "table",
    "theory",
  }
  assert set(optim.__all__) == public - modules
  for name in optim.__all__:
    obj = getattr(optim, name)
    if callable(obj):
      assert obj.__doc__ and len(obj.__doc__) > 40, name


@pytest.mark.parametrize(
  "name",
  [
    n
    for n in optim.__all__
    if callable(getattr(optim, n)) and not isinstance(getattr(optim, n), type)
  ],
)
def test_every_public_function_documents_args_returns_example(name):
  doc = getattr(optim, name).__doc__
  for section in ("Returns:", "Example:"):
    assert section in doc, (name, section)
  if getattr(optim, name).__code__.co_argcount + getattr(optim, name).__code__.co_kwonlyargcount:
    assert "Args:" in doc, name


def _params():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return {"w": jax.random.normal(k1, (8, 16)), "b": jax.random.normal(k2, (16,))}


def _run(tx, steps=5, jit=False):
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for t in range(steps):
    grads = jax.tree.map(lambda p: jnp.sin(p * (t + 1)), params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


@pytest.mark.parametrize(
  "alias",
  [
    lambda: optim.stable_adamw(1e-2, clip_threshold=None),
    lambda: optim.adamw(1e-2),
  ],
)
@pytest.mark.parametrize("jit", [False, True])
def test_defaults_are_optax_adamw_bit_for_bit(alias, jit):
  ours, theirs = _run(alias(), jit=jit), _run(optax.adamw(1e-2), jit=jit)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(a, b)  # the same operations in the same order


def test_shared_defaults_match_optax():
  import inspect

  adamw = inspect.signature(optax.adamw).parameters
  for alias in (
    optim.stable_adamw,
    optim.adamw,
    optim.adam_atan2,
    optim.scale_by_stable_adam,
    optim.scale_by_adam_atan2,
  ):
    for name, p in inspect.signature(alias).parameters.items():
      if name in adamw and name != "learning_rate":
        assert p.default == adamw[name].default, (alias.__name__, name)


BAD = [
  (optim.stable_adamw, dict(learning_rate=1e-3, b2=1.5), "b2"),
  (optim.stable_adamw, dict(learning_rate=1e-3, b2=1.0), "b2"),
  (optim.stable_adamw, dict(learning_rate=1e-3, b1=-0.1), "b1"),
  (optim.stable_adamw, dict(learning_rate=-1e-3), "learning_rate"),
  (optim.stable_adamw, dict(learning_rate=float("nan")), "learning_rate"),
  (optim.stable_adamw, dict(learning_rate=1e-3, eps=-1e-8), "eps"),
  (optim.stable_adamw, dict(learning_rate=1e-3, clip_threshold=0.0), "clip_threshold"),
  (optim.stable_adamw, dict(learning_rate=1e-3, clip_threshold=-1.0), "clip_threshold"),
  (optim.stable_adamw, dict(learning_rate=1e-3, weight_decay=-0.1), "weight_decay"),
  (optim.stable_adamw, dict(learning_rate=1e-3, weight_decay_mode="l2"), "weight_decay_mode"),
  (optim.stable_adamw, dict(learning_rate="1e-3"), "learning_rate"),
  (optim.adamw, dict(learning_rate=1e-3, b2=2.0), "b2"),
  (optim.adamw, dict(learning_rate=1e-3, eps=float("inf")), "eps"),
  (optim.adam_atan2, dict(learning_rate=1e-3, a=0.0), "a"),
  (optim.adam_atan2, dict(learning_rate=1e-3, b=-1.0), "b"),
  (optim.adam_atan2, dict(learning_rate=1e-3, b1=1.0), "b1"),
  (optim.adam_atan2, dict(learning_rate=-1.0), "learning_rate"),
  (optim.scale_by_stable_adam, dict(b2=1.5), "b2"),
  (optim.scale_by_stable_adam, dict(clip_threshold=0.0), "clip_threshold"),
  (optim.scale_by_adam_atan2, dict(b2=-0.5), "b2"),
  (optim.with_learning_rate, dict(direction=optax.identity(), learning_rate=-1.0), "learning_rate"),
  (optim.skip_spikes, dict(inner=optax.identity(), k=-1.0, window=10), "k"),
  (optim.skip_spikes, dict(inner=optax.identity(), k=0.0, window=10), "k"),
  (optim.skip_spikes, dict(inner=optax.identity(), k=3.0, window=1), "window"),
  (optim.skip_spikes, dict(inner=optax.identity(), k=3.0, window=2.5), "window"),
  (optim.skip_spikes, dict(inner=optax.identity(), k=3.0, window=10, metric="gnorm"), "metric"),
  (optim.skip_spikes, dict(inner=optax.identity(), k=3.0, window=10, max_in_row=-1), "max_in_row"),
  (optim.warmup_cosine, dict(peak=1.0, warmup_steps=20, total_steps=10), "warmup_steps"),
  (
    optim.warmup_cosine,
    dict(peak=1.0, warmup_steps=0, total_steps=10, final_lr_ratio=2.0),
    "final_lr_ratio",
  ),
  (optim.wsd, dict(peak=1.0, warmup_steps=0, total_steps=10, decay_fraction=0.0), "decay_fraction"),
  (optim.constant, dict(peak=-1.0), "peak"),
  (optim.exponents, dict(parametrization="mu"), "parametrization"),
  (optim.exponents, dict(parametrization="mup", optimizer="adamw"), "optimizer"),
  (optim.exponents, dict(parametrization="mup", alignment="half"), "alignment"),
  (optim.depth_exponents, dict(alpha=1.5), "alpha"),
  (optim.branch_multiplier, dict(depth=8, base_depth=0, alpha=1.0), "base_depth"),
]


@pytest.mark.parametrize(
  "fn,kwargs,name", BAD, ids=[f"{f.__name__}-{n}-{i}" for i, (f, _, n) in enumerate(BAD)]
)
def test_bad_arguments_raise_naming_the_argument(fn, kwargs, name):
  with pytest.raises(ValueError, match=rf"^{name} = .*: must be "):
    fn(**kwargs)


def test_clip_threshold_zero_is_an_error_not_a_frozen_run():
  with pytest.raises(ValueError, match="clip_threshold = 0.0: must be a finite number > 0"):
    optim.stable_adamw(1e-3, clip_threshold=0.0)


def test_traced_hyperparameters_are_not_checked_but_concrete_ones_are():
  # inject_hyperparams hands the alias arrays; under jit they are traced.
  tx = optax.inject_hyperparams(optim.stable_adamw)(learning_rate=1e-3, b2=0.95)
  params = _params()
  state = tx.init(params)
  step = jax.jit(lambda g, s: tx.update(g, s, params))
  updates, _ = step(params, state)
  assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
  with pytest.raises(ValueError, match="^b2 = "):
    optax.inject_hyperparams(optim.stable_adamw)(learning_rate=1e-3, b2=1.5).init(params)


def test_schedule_peak_may_be_traced():
  lrs = jax.vmap(lambda peak: optim.warmup_cosine(peak, 2, 10)(4))(jnp.array([1.0, 2.0]))
  expected = 0.5 * (1 + math.cos(math.pi * 2 / 8))  # step 4: 2 steps into an 8-step cosine
  np.testing.assert_allclose(lrs, [expected, 2 * expected], rtol=1e-6)  # float32 cos
