"""The aliases against optax: signatures, empty trees, shapes, table families, tables in jit."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim


def _positional(fn) -> list:
  kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
  return [(n, p.default) for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds]


def _keyword_only(fn) -> dict:
  params = inspect.signature(fn).parameters.items()
  return {n: p.default for n, p in params if p.kind == inspect.Parameter.KEYWORD_ONLY}


# --- 1. optax.adamw's argument order, names and defaults -------------------------------


@pytest.mark.parametrize(
  "ours,theirs",
  [
    (optim.adamw, optax.adamw),
    (optim.stable_adamw, optax.adamw),
    (optim.scale_by_stable_adam, optax.scale_by_adam),
  ],
)
def test_positional_arguments_are_optax_in_its_order(ours, theirs):
  assert _positional(ours) == _positional(theirs)
  assert _keyword_only(ours)["nesterov"] is _keyword_only(theirs)["nesterov"] is False


def test_adam_atan2_shares_optax_names_and_defaults_but_not_eps():
  adamw = dict(_positional(optax.adamw), **_keyword_only(optax.adamw))
  assert _positional(optim.adam_atan2) == _positional(optax.adamw)[:3]
  keyword = _keyword_only(optim.adam_atan2)
  for name in ("mu_dtype", "weight_decay", "mask", "nesterov"):
    assert keyword[name] == adamw[name], name
  assert "eps" not in keyword and "eps_root" not in keyword
  assert _positional(optim.scale_by_adam_atan2) == _positional(optax.scale_by_adam)[:2]


def _steps(tx, params, grads, jit=True):
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
  return params


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  params = {
    "w": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal((3,)), jnp.float32),
  }
  grads = [
    jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
    for _ in range(4)
  ]
  return params, grads


@pytest.mark.parametrize("alias", [optim.adamw, optim.stable_adamw])
def test_an_optax_positional_call_binds_the_same_arguments(alias):
  params, grads = _problem()
  extra = {"clip_threshold": None} if alias is optim.stable_adamw else {}
  short = (1e-2, 0.8, 0.95, 1e-7, 0.0)  # the call of the brief: optax's first five
  full = (1e-2, 0.8, 0.95, 1e-7, 1e-6, jnp.bfloat16, 0.1, {"w": True, "b": False})
  for args in (short, full):
    ours = _steps(alias(*args, **extra), params, grads)
    theirs = _steps(optax.adamw(*args), params, grads)
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)  # bit for bit


def test_inject_hyperparams_with_a_traced_eps_root_is_optax_bit_for_bit():
  params, grads = _problem(1)
  kwargs = dict(learning_rate=1e-2, eps_root=1e-6, nesterov=True)
  ours = _steps(optax.inject_hyperparams(optim.adamw)(**kwargs), params, grads)
  theirs = _steps(optax.inject_hyperparams(optax.adamw)(**kwargs), params, grads)
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_scale_by_stable_adam_without_clipping_is_scale_by_adam_bit_for_bit():
  params, grads = _problem(2)
  for nesterov in (False, True):
    args = (0.8, 0.95, 1e-7, 1e-6, jnp.bfloat16)
    ours = optim.scale_by_stable_adam(*args, nesterov=nesterov, clip_threshold=None)
    theirs = optax.scale_by_adam(*args, nesterov=nesterov)
    s1, s2 = ours.init(params), theirs.init(params)
    for g in grads:
      (u1, s1), (u2, s2) = ours.update(g, s1), theirs.update(g, s2)
      jax.tree.map(np.testing.assert_array_equal, u1, u2)


BAD = [
  (optim.adamw, dict(learning_rate=1e-3, eps_root=-1e-8), "eps_root"),
  (optim.adamw, dict(learning_rate=1e-3, eps_root=float("nan")), "eps_root"),
  (optim.stable_adamw, dict(learning_rate=1e-3, nesterov=1), "nesterov"),
  (optim.stable_adamw, dict(learning_rate=1e-3, nesterov="yes"), "nesterov"),
  (optim.stable_adamw, dict(learning_rate=1e-3, mu_dtype=jnp.int32), "mu_dtype"),
  (optim.stable_adamw, dict(learning_rate=1e-3, mu_dtype="bool"), "mu_dtype"),
  (optim.scale_by_stable_adam, dict(eps_root=-1.0), "eps_root"),
  (optim.adam_atan2, dict(learning_rate=1e-3, nesterov=None), "nesterov"),
  (optim.scale_by_adam_atan2, dict(mu_dtype="int8"), "mu_dtype"),
]


@pytest.mark.parametrize("fn,kwargs,name", BAD, ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD)])
def test_new_arguments_are_checked_naming_them(fn, kwargs, name):
  with pytest.raises(ValueError, match=rf"^{name} = .*: must be "):
    fn(**kwargs)


# --- 2. Empty trees --------------------------------------------------------------------


def _empty_table():
  return optim.parametrize(base={}, target={})


ALIASES = {
  "adamw": lambda: optim.adamw(1e-3),
  "stable_adamw": lambda: optim.stable_adamw(1e-3),
  "adamw_nesterov_table": lambda: optim.adamw(1e-3, nesterov=True, parametrization=_empty_table()),
  "adam_atan2": lambda: optim.adam_atan2(1e-3),
  "with_learning_rate": lambda: optim.with_learning_rate(optax.trace(0.9), 0.1, 0.1),
  "width_scaled": lambda: optim.with_learning_rate(
    optax.trace(0.9), 0.1, 0.1, parametrization=_empty_table(), weight_decay_mode="width_scaled"
  ),
  "scale_by_parametrization": lambda: optim.scale_by_parametrization(_empty_table()),
}


@pytest.mark.parametrize("name", ALIASES)
@pytest.mark.parametrize("jit", [False, True])
def test_empty_params_as_optax(name, jit):
  want, _ = optax.adamw(1e-3).update({}, optax.adamw(1e-3).init({}), {})
  tx = ALIASES[name]()
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init({})
  for _ in range(2):
    updates, state = update({}, state, {})
  assert updates == want == {}
  assert jax.tree.structure(state) == jax.tree.structure(tx.init({}))  # states keep their form


@pytest.mark.parametrize("name", ["adamw", "stable_adamw", "adam_atan2", "with_learning_rate"])
@pytest.mark.parametrize("empty", ["a", "b"])
def test_multi_transform_with_a_label_that_has_no_leaves(name, empty):
  params, grads = _problem(3)
  labels = {"w": "b" if empty == "a" else "a", "b": "b" if empty == "a" else "a"}

  def run(alias):
    tx = optax.multi_transform({"a": alias, "b": optax.sgd(1e-2)}, labels)
    return _steps(tx, params, grads)

  got = run(ALIASES[name]())
  if name == "adamw" or empty == "a":
    # Where optax.adamw does the same (adamw, or an alias that gets no leaf): its bits.
    jax.tree.map(np.testing.assert_array_equal, got, run(optax.adamw(1e-3)))
  if empty == "b":  # the alias gets every leaf: its own steps, bit for bit
    jax.tree.map(np.testing.assert_array_equal, got, _steps(ALIASES[name](), params, grads))
  else:  # sgd gets every leaf
    jax.tree.map(np.testing.assert_array_equal, got, _steps(optax.sgd(1e-2), params, grads))


def test_multi_transform_with_a_table_and_an_empty_label():
  params, grads = _problem(4)
  table = optim.parametrize(base=params, target=params)
  labels = {"w": "b", "b": "b"}
  tx = optax.multi_transform(
    {"a": optim.adamw(1e-3, parametrization=table), "b": optax.sgd(1.0)}, labels
  )
  got = _steps(tx, params, grads)
  sgd = _steps(optax.sgd(1.0), params, grads)
  jax.tree.map(np.testing.assert_array_equal, got, sgd)


# --- 3. Gradients of another shape -----------------------------------------------------


def _shaped():
  return {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}


def _table():
  return optim.parametrize(base=_shaped(), target=_shaped())


SHAPE_CHECKED = {
  "adamw": lambda: optim.adamw(1e-3),
  "stable_adamw": lambda: optim.stable_adamw(1e-3, parametrization=_table()),
  "adam_atan2": lambda: optim.adam_atan2(1e-3),
  "sgd": lambda: optim.with_learning_rate(optax.trace(0.9), 0.1),
  "scale_by_stable_adam": lambda: optim.scale_by_stable_adam(),
  "scale_by_adam_atan2": lambda: optim.scale_by_adam_atan2(),
  "scale_by_parametrization": lambda: optim.scale_by_parametrization(_table()),
}


@pytest.mark.parametrize("name", SHAPE_CHECKED)
@pytest.mark.parametrize("bad", [(3,), (1, 3), (3, 2)])  # (1, 3) would broadcast silently
@pytest.mark.parametrize("jit", [False, True])
def test_gradients_of_another_shape_name_the_leaf(name, bad, jit):
  tx = SHAPE_CHECKED[name]()
  params = _shaped()
  grads = {"w": jnp.ones(bad), "b": jnp.ones(3)}
  update = jax.jit(tx.update) if jit else tx.update
  message = rf"^params\['w'\] is given an update of shape \({bad[0]},.*: must be .*\(2, 3\)"
  with pytest.raises(ValueError, match=message):
    update(grads, tx.init(params), params)
  update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)  # the right shapes pass


def test_gradients_of_another_structure_name_the_updates():
  tx = optim.adamw(1e-3)
  params = _shaped()
  with pytest.raises(ValueError, match=r"^updates is a tree of another structure.*\['b'\]"):
    tx.update({"w": jnp.ones((2, 3))}, tx.init(params), params)


def test_the_shape_check_does_not_retrace():
  traces = []
  tx = optim.stable_adamw(1e-3, parametrization=_table())

  @jax.jit
  def step(g, s, p):
    traces.append(1)
    return tx.update(g, s, p)

  params = _shaped()
  state = tx.init(params)
  for _ in range(3):
    _, state = step(jax.tree.map(jnp.ones_like, params), state, params)
  assert len(traces) == 1


# --- 4. A table built for another family -----------------------------------------------


@pytest.mark.parametrize("alias", [optim.adamw, optim.stable_adamw, optim.adam_atan2])
@pytest.mark.parametrize("family", ["sgd", "adafactor", "muon", "muon_rms"])
def test_adam_aliases_refuse_a_table_of_another_family(alias, family):
  table = optim.parametrize(base=_shaped(), target=_shaped(), optimizer=family)
  message = rf"^parametrization is a table built for optimizer '{family}': must be .*'adam'"
  with pytest.raises(ValueError, match=message):
    alias(1e-3, parametrization=table)


def test_a_table_must_be_a_table():
  with pytest.raises(ValueError, match="^parametrization is not a table: must be a table from"):
    optim.adamw(1e-3, parametrization={"w": 1.0, "b": 1.0})


def test_the_generic_path_takes_any_family():
  mlp = lambda n: {"w": jnp.ones((4, n)), "v": jnp.ones((n, n)), "o": jnp.ones((n, 2))}
  table = optim.parametrize(base=mlp(8), target=mlp(32), parametrization="mup_tp5", optimizer="sgd")
  target, grads = mlp(32), jax.tree.map(jnp.ones_like, mlp(32))
  tx = optim.with_learning_rate(optax.trace(0.0), 1.0, parametrization=table)
  updates, _ = tx.update(grads, tx.init(target), target)
  lr = optim.lr_multipliers(table)
  assert lr == {"w": 4.0, "v": 1.0, "o": 0.25}  # Tensor Programs V's SGD: m, 1, 1/m
  for k in target:
    np.testing.assert_array_equal(updates[k], -lr[k] * np.ones(target[k].shape, np.float32))
  sbp = optim.scale_by_parametrization(table)
  scaled, _ = sbp.update(grads, sbp.init(target))
  jax.tree.map(np.testing.assert_array_equal, scaled, jax.tree.map(lambda u: -u, updates))


# --- 5. A table through jax.jit --------------------------------------------------------


def _mlp(n):
  return {"w_in": jnp.ones((4, n)), "w_out": jnp.ones((n, 2))}


def test_a_table_is_a_pytree_with_no_array_leaves():
  table = optim.parametrize(base=_mlp(8), target=_mlp(32))
  assert jax.tree.leaves(table) == []
  is_scale = lambda x: isinstance(x, optim.LeafScale)
  assert [s.role for s in jax.tree.leaves(table, is_leaf=is_scale)] == ["input", "output"]
  leaves, treedef = jax.tree.flatten(table)
  assert jax.tree.unflatten(treedef, leaves) == table


def test_a_table_as_a_jit_argument():
  table = optim.parametrize(base=_mlp(8), target=_mlp(32))
  traces = []

  @jax.jit
  def effective(t, p):
    traces.append(1)
    return optim.apply_multipliers(t, p)

  got = effective(table, _mlp(32))
  want = optim.apply_multipliers(table, _mlp(32))
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert float(got["w_in"][0, 0]) == 2.0  # input multiplier m^(1/2) at m = 4, not 1
  effective(optim.parametrize(base=_mlp(8), target=_mlp(32)), _mlp(32))  # an equal table
  assert len(traces) == 1
  effective(optim.parametrize(base=_mlp(16), target=_mlp(32)), _mlp(32))  # other numbers
  assert len(traces) == 2


def test_an_optimizer_built_inside_jit_from_a_table_argument():
  table = optim.parametrize(base=_mlp(8), target=_mlp(32))
  params = _mlp(32)

  def step(t, p):
    tx = optim.adamw(1e-3, weight_decay=0.0, parametrization=t)
    return tx.update(p, tx.init(p), p)[0]

  jax.tree.map(np.testing.assert_array_equal, jax.jit(step)(table, params), step(table, params))
  grads = jax.vmap(lambda p: step(table, p))(jax.tree.map(lambda x: jnp.stack([x, x]), params))
  assert grads["w_out"].shape == (2, 32, 2)


def test_static_argnums_takes_an_entry_but_not_a_dict_table():
  table = optim.parametrize(base=_mlp(8), target=_mlp(32))
  scale = jax.jit(lambda s, x: s.multiplier * x, static_argnums=0)
  assert float(scale(table["w_in"], jnp.ones(()))) == 2.0  # a LeafScale is hashable
  # A dict is not hashable: what LeafScale's docstring says (pass it as an argument).
  with pytest.raises((ValueError, TypeError), match="hashable"):
    jax.jit(optim.apply_multipliers, static_argnums=0)(table, _mlp(32))
