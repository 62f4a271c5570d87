"""Lion, SGD and Adafactor against NumPy references written from their papers, and optax.

Each reference runs in float64 on the same float32 gradients and initial params as the
alias; the params after every one of ten steps are compared. With a table, each leaf's
learning rate is multiplied by its `lr_multipliers` entry (muP); weight decay is the
decoupled one of `with_learning_rate`: theta -= lr k (d + lambda theta).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamlab import optim

STEPS = 10
BASE, WIDTH = 8, 16
# float32 params against a float64 reference over 10 steps: each step rounds theta
# (|theta| < 2 here) by at most half an ulp, 1.2e-7, so 1.2e-6 after 10 steps; the
# steps themselves (lr k d, about 1e-2) carry a few ulps of their own, about 1e-9. A
# mistake in the algorithm (a flipped sign, swapped betas, a matrix's moments not
# factored) is off by 1e-2 or more. Measured: 3.4e-7 at most.
RTOL, ATOL = 1e-6, 2e-6


def mlp(n, seed=0):
  rng = np.random.default_rng(seed)
  shapes = {"w_in": (4, n), "w_h": (n, n), "w_out": (n, 3), "b": (n,)}
  return {k: jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32) for k, s in shapes.items()}


def gradients(params, seed=1, steps=STEPS):
  """Ten steps of float32 gradients; the first row of w_h is zero at every step (Lion's
  sign(0), a zero gradient under Adafactor's eps)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(steps):
    g = {k: rng.normal(size=p.shape).astype(np.float32) for k, p in params.items()}
    g["w_h"][0] = 0.0
    out.append(jax.tree.map(jnp.asarray, g))
  return out


def table(family, parametrization="mup"):
  t = optim.parametrize(
    base=mlp(BASE), target=mlp(WIDTH), optimizer=family, parametrization=parametrization
  )
  assert set(optim.lr_multipliers(t).values()) != {1.0}  # the table changes something
  return t


def run(tx, params, grads, jit=True):
  """The params after every step, as float64 NumPy trees."""
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  out = []
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append(jax.tree.map(lambda p: np.asarray(p, np.float64), params))
  return out


def compare(got, want, rtol, atol):
  for step, (a, b) in enumerate(zip(got, want)):
    for name in b:
      np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=f"{name}@{step}")


def multipliers(t, params):
  return {k: 1.0 for k in params} if t is None else optim.lr_multipliers(t)


def per_leaf(reference, params, grads, **kwargs):
  """Runs a one-leaf reference on every leaf; kwargs `k` is a tree of multipliers."""
  k = kwargs.pop("k")
  thetas = {
    name: reference(
      [np.asarray(g[name], np.float64) for g in grads],
      np.asarray(params[name], np.float64),
      k=k[name],
      **kwargs,
    )
    for name in params
  }
  return [{name: thetas[name][t] for name in params} for t in range(len(grads))]


# --- References, from the papers -------------------------------------------------------


def lion_reference(grads, theta, lrs, b1, b2, wd, k):
  """Chen et al. 2023, Program 1: c = b1 m + (1 - b1) g; theta -= lr (sign(c) + wd theta);
  m = b2 m + (1 - b2) g; here with the leaf's multiplier k on lr. np.sign(0) = 0."""
  m = np.zeros_like(theta)
  out = []
  for g, lr in zip(grads, lrs):
    c = b1 * m + (1 - b1) * g
    theta = theta - lr * k * (np.sign(c) + wd * theta)
    m = b2 * m + (1 - b2) * g
    out.append(theta)
  return out


def sgd_reference(grads, theta, lrs, momentum, nesterov, wd, k):
  """Heavy ball with its velocity m_t = mu m_(t-1) + g_t; nesterov steps along
  g_t + mu m_t (Sutskever et al.'s look-ahead, see the next two references);
  momentum None or 0 is plain SGD."""
  mu = momentum or 0.0
  m = np.zeros_like(theta)
  out = []
  for g, lr in zip(grads, lrs):
    m = mu * m + g
    d = g + mu * m if nesterov else m
    theta = theta - lr * k * (d + wd * theta)
    out.append(theta)
  return out


def polyak(grads, theta, eta, mu):
  """Polyak 1964: theta_(t+1) = theta_t - eta g_t + mu (theta_t - theta_(t-1)),
  theta_(-1) = theta_0."""
  previous, out = theta, []
  for g in grads:
    theta, previous = theta - eta * g + mu * (theta - previous), theta
    out.append(theta)
  return out


def sutskever(grads, theta, eta, mu):
  """Sutskever et al. 2013, eq. (3)-(4): v_(t+1) = mu v_t - eta grad f(theta_t + mu v_t),
  theta_(t+1) = theta_t + v_(t+1). g_t is the gradient at the look-ahead point
  theta_t + mu v_t, which is therefore what an optimizer holding only the params
  holds: those points are returned."""
  v, out = np.zeros_like(theta), []
  for g in grads:
    v = mu * v - eta * g
    theta = theta + v
    out.append(theta + mu * v)
  return out


def adafactor_reference(
  grads,
  theta,
  lrs,
  k,
  min_dim,
  decay_rate,
  clip,
  scale,
  eps,
  wd,
  factored=True,
  offset=0,
  first_step=1,
  clipped=None,
):
  """Shazeer and Stern 2018, Algorithms 4 (matrices) and 5 (the rest), without the first
  moment, with beta2_t = 1 - t^-c: R_t, C_t the row and column means of G^2 + eps1,
  V_t = R_t C_t / mean(R_t); U_t = G_t / sqrt(V_t), clipped to RMS d, times
  max(eps2 = 1e-3, RMS(theta)). A matrix is factored when both its sizes are >= min_dim.
  clipped: a list that gets one entry per step where clipping changed U."""
  rms = lambda x: np.sqrt(np.mean(x**2))
  matrix = factored and theta.ndim == 2 and min(theta.shape) >= min_dim
  r = np.zeros(theta.shape[0]) if matrix else None
  c = np.zeros(theta.shape[1]) if matrix else None
  v = np.zeros_like(theta)
  out = []
  for t, (g, lr) in enumerate(zip(grads, lrs), start=first_step):
    beta = 1.0 - (t - offset) ** -decay_rate
    g2 = g**2 + eps
    if matrix:
      r = beta * r + (1 - beta) * g2.mean(axis=1)
      c = beta * c + (1 - beta) * g2.mean(axis=0)
      v = np.outer(r, c) / r.mean()
    else:
      v = beta * v + (1 - beta) * g2
    u = g / np.sqrt(v)
    if clip is not None:
      if clipped is not None and rms(u) > clip:
        clipped.append(t)
      u = u / max(1.0, rms(u) / clip)
    if scale:
      u = u * max(1e-3, rms(theta))
    theta = theta - lr * k * (u + wd * theta)
    out.append(theta)
  return out


# --- Lion ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [None, "adam"])
@pytest.mark.parametrize("scheduled", [False, True])
def test_lion_matches_the_paper(family, scheduled):
  params = mlp(WIDTH)
  grads = gradients(params)
  t = None if family is None else table(family)
  schedule = lambda n: 1e-2 * (1.0 - n / 20)
  lr = schedule if scheduled else 1e-2
  tx = optim.lion(lr, b1=0.9, b2=0.99, weight_decay=0.1, parametrization=t)
  lrs = [schedule(n) if scheduled else 1e-2 for n in range(STEPS)]
  want = per_leaf(
    lion_reference, params, grads, lrs=lrs, b1=0.9, b2=0.99, wd=0.1, k=multipliers(t, params)
  )
  # float32 against float64 over 10 steps (RTOL, ATOL); a flipped sign would be off by
  # 2 lr k >= 1e-2.
  compare(run(tx, params, grads), want, rtol=RTOL, atol=ATOL)


def test_lion_sign_of_zero_is_zero():
  # m_0 = 0 and g = 0 give c = 0: no step, only the decay moves the leaf.
  params = mlp(WIDTH)
  zero = jax.tree.map(jnp.zeros_like, params)
  for wd in (0.0, 0.5):
    tx = optim.lion(1e-2, weight_decay=wd)
    u, _ = tx.update(zero, tx.init(params), params)
    for name in params:  # -lr * wd * theta, the same float32 products
      np.testing.assert_array_equal(u[name], -1e-2 * (wd * params[name]))
  # The zero row of w_h (every step) moved by the decay alone, (1 - lr wd)^10.
  grads = gradients(params)
  after = run(optim.lion(1e-2, weight_decay=0.1), params, grads)[-1]["w_h"][0]
  # float32 against float64: 10 products, each rounded by half an ulp (6e-8 relative)
  np.testing.assert_allclose(after, params["w_h"][0] * (1 - 1e-3) ** STEPS, rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_lion_is_optax_lion_bit_for_bit(jit):
  params = mlp(WIDTH)
  grads = gradients(params)
  got = run(optim.lion(3e-3), params, grads, jit)
  want = run(optax.lion(3e-3), params, grads, jit)
  jax.tree.map(np.testing.assert_array_equal, got, want)  # the same operations, in order


# --- SGD -------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "momentum,nesterov", [(None, False), (0.0, False), (0.9, False), (0.9, True)]
)
@pytest.mark.parametrize("family", [None, "sgd"])
def test_sgd_matches_the_reference(momentum, nesterov, family):
  params = mlp(WIDTH)
  grads = gradients(params)
  t = None if family is None else table(family, "mup_tp5")
  tx = optim.sgd(1e-2, momentum, nesterov, weight_decay=0.01, parametrization=t)
  want = per_leaf(
    sgd_reference,
    params,
    grads,
    lrs=[1e-2] * STEPS,
    momentum=momentum,
    nesterov=nesterov,
    wd=0.01,
    k=multipliers(t, params),
  )
  # float32 against float64 over 10 steps (RTOL, ATOL); the momentum (|m| <= 10 |g|)
  # adds a few ulps of its own, times lr k <= 0.04: about 1e-8.
  compare(run(tx, params, grads), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_is_polyak_and_sutskever(nesterov):
  # The papers' own recursions, with a constant learning rate and no decay.
  params = mlp(WIDTH)
  grads = gradients(params)
  got = run(optim.sgd(1e-2, 0.9, nesterov), params, grads)
  reference = sutskever if nesterov else polyak
  want = per_leaf(
    lambda g, th, k: reference(g, th, 1e-2 * k, 0.9), params, grads, k=multipliers(None, params)
  )
  # float32 against float64 over 10 steps (RTOL, ATOL); the recursions themselves are
  # equal in exact arithmetic.
  compare(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("momentum", [None, 0.0, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("jit", [False, True])
def test_sgd_is_optax_sgd_bit_for_bit(momentum, nesterov, jit):
  params = mlp(WIDTH)
  grads = gradients(params)
  got = run(optim.sgd(1e-2, momentum, nesterov), params, grads, jit)
  want = run(optax.sgd(1e-2, momentum, nesterov), params, grads, jit)
  jax.tree.map(np.testing.assert_array_equal, got, want)  # decay 0 adds exact zeros


def test_momentum_zero_is_plain_sgd_exactly():
  # The trainer injects momentum as a number; 0.0 keeps the state and steps -lr g.
  params = mlp(WIDTH)
  for tx in (optim.sgd(1e-2, 0.0), optax.inject_hyperparams(optim.sgd)(1e-2, momentum=0.0)):
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in gradients(params):
      u, state = update(g, state, params)
      for name in params:
        np.testing.assert_array_equal(u[name], -1e-2 * g[name])
  plain = run(optim.sgd(1e-2), params, gradients(params))
  zero = run(optim.sgd(1e-2, 0.0), params, gradients(params))
  jax.tree.map(np.testing.assert_array_equal, zero, plain)
  assert jax.tree.leaves(optim.sgd(1e-2).init(params)) == []  # None: no state at all


# --- Adafactor -------------------------------------------------------------------------

ADAFACTOR_CASES = {
  # optax's defaults: every leaf here is below min_dim_size_to_factor (unfactored).
  "defaults": dict(),
  # w_h (16 x 16) factored, the rest not; clipping always active.
  "factored": dict(min_dim_size_to_factor=8, clipping_threshold=0.5),
  "factored_no_clip_no_scale": dict(
    min_dim_size_to_factor=8, clipping_threshold=None, multiply_by_parameter_scale=False
  ),
  "decay_rate": dict(min_dim_size_to_factor=8, decay_rate=0.5, eps=1e-20),
  "factored_false": dict(min_dim_size_to_factor=8, factored=False),
}


def _adafactor_kwargs(case):
  kw = dict(
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    clipping_threshold=1.0,
    multiply_by_parameter_scale=True,
    eps=1e-30,
    factored=True,
  )
  kw.update(ADAFACTOR_CASES[case])
  return kw


def _adafactor_reference(params, grads, kw, t, wd, lrs, clipped=None, **extra):
  return per_leaf(
    adafactor_reference,
    params,
    grads,
    lrs=lrs,
    k=multipliers(t, params),
    min_dim=kw["min_dim_size_to_factor"],
    decay_rate=kw["decay_rate"],
    clip=kw["clipping_threshold"],
    scale=kw["multiply_by_parameter_scale"],
    eps=kw["eps"],
    wd=wd,
    factored=kw["factored"],
    clipped=clipped,
    **extra,
  )


@pytest.mark.parametrize("case", ADAFACTOR_CASES)
@pytest.mark.parametrize("family", [None, "adafactor"])
def test_adafactor_matches_the_paper(case, family):
  params = mlp(WIDTH)
  grads = gradients(params)
  t = None if family is None else table(family)
  kw = _adafactor_kwargs(case)
  tx = optim.adafactor(1e-2, weight_decay=0.01, parametrization=t, **kw)
  clipped: list = []
  want = _adafactor_reference(params, grads, kw, t, 0.01, [1e-2] * STEPS, clipped)
  if kw["clipping_threshold"] is not None:
    assert clipped  # the clipping was exercised
  # float32 against float64 over 10 steps (RTOL, ATOL): U_t carries a few ulps (squares,
  # means, a square root, 1 - t^-c), times lr k max(1e-3, RMS(theta)) <= 1e-2.
  compare(run(tx, params, grads), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", ADAFACTOR_CASES)
def test_adafactor_is_optax_adafactor_up_to_rounding(case):
  # On the same params every step: the states agree exactly, and the updates differ
  # only by where the learning rate multiplies (optax: before the parameter scale).
  params = mlp(WIDTH)
  kw = _adafactor_kwargs(case)
  ours = optim.adafactor(1e-2, **kw)
  theirs = optax.adafactor(1e-2, **kw)
  s1, s2 = ours.init(params), theirs.init(params)
  for g in gradients(params):
    u1, s1 = ours.update(g, s1, params)
    u2, s2 = theirs.update(g, s2, params)
    for name in params:
      # U lr s against U s lr in float32: each rounds twice, half an ulp (6e-8) each, so
      # they differ by 2.4e-7 relative at most (measured 1.6e-7); zeros are exact.
      np.testing.assert_allclose(u1[name], u2[name], rtol=3e-7, atol=0)
    params = optax.apply_updates(params, u1)


def test_adafactor_factors_only_large_matrices():
  params = mlp(WIDTH)
  state = optim.adafactor(1e-2, min_dim_size_to_factor=8).init(params)
  (factored,) = optim.states_of(state, optax.FactoredState)
  assert factored.v_row["w_h"].shape == (WIDTH,) and factored.v["w_h"].shape == (1,)
  for name in ("w_in", "w_out", "b"):  # (4, 16), (16, 3): a side below 8; a vector
    assert factored.v[name].shape == params[name].shape


def test_adafactor_decay_offset_restarts_the_schedule():
  # Fine-tuning: a state restored after 4 steps, continued with decay_offset=4, decays
  # as a fresh one (t - 4 = 1, 2, ...) while its count goes on.
  params = mlp(WIDTH)
  grads = gradients(params)
  kw = _adafactor_kwargs("factored")
  first = optim.adafactor(1e-2, **kw)
  state = first.init(params)
  for g in grads[:4]:
    u, state = first.update(g, state, params)
    params = optax.apply_updates(params, u)
  start = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
  then = optim.adafactor(1e-2, decay_offset=4, **kw)
  got = []
  for g in grads[4:]:
    u, state = then.update(g, state, params)
    params = optax.apply_updates(params, u)
    got.append(jax.tree.map(lambda p: np.asarray(p, np.float64), params))
  want = _adafactor_reference(
    start,
    grads[4:],
    kw,
    None,
    0.0,
    [1e-2] * 6,
    first_step=5,
    offset=4,
  )
  # Step 5 has beta = 0: the moments restart, so the reference needs no earlier state.
  # float32 against float64 over 6 steps (RTOL, ATOL).
  compare(got, want, rtol=RTOL, atol=ATOL)


# --- All three -------------------------------------------------------------------------


@pytest.mark.parametrize(
  "ours,theirs",
  [(optim.lion, optax.lion), (optim.sgd, optax.sgd), (optim.adafactor, optax.adafactor)],
)
def test_signatures_are_optax(ours, theirs):
  kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
  mine = inspect.signature(ours).parameters
  optax_ = inspect.signature(theirs).parameters
  positional = [n for n, p in mine.items() if p.kind in kinds]
  assert positional == list(optax_)[: len(positional)]  # optax's order
  for name, p in mine.items():
    if name in optax_ and name != "learning_rate":
      assert p.default == optax_[name].default, name
  for name in ("parametrization", "weight_decay_mode"):
    assert mine[name].kind == inspect.Parameter.KEYWORD_ONLY


def test_tables_of_another_family_are_refused():
  params = mlp(WIDTH)
  for alias, wrong in ((optim.lion, "sgd"), (optim.sgd, "adam"), (optim.adafactor, "adam")):
    with pytest.raises(ValueError, match=r"^parametrization is a table built for optimizer"):
      alias(1e-2, parametrization=optim.parametrize(base=mlp(8), target=params, optimizer=wrong))


BAD = [
  (optim.lion, dict(b1=1.0), "b1"),
  (optim.lion, dict(b2=-0.1), "b2"),
  (optim.lion, dict(mu_dtype=jnp.int32), "mu_dtype"),
  (optim.lion, dict(weight_decay=-1e-3), "weight_decay"),
  (optim.lion, dict(weight_decay_mode="l2"), "weight_decay_mode"),
  (optim.lion, dict(learning_rate=float("nan")), "learning_rate"),
  (optim.sgd, dict(momentum=1.0), "momentum"),
  (optim.sgd, dict(momentum=-0.5), "momentum"),
  (optim.sgd, dict(momentum=0.9, nesterov="yes"), "nesterov"),
  (optim.sgd, dict(accumulator_dtype=jnp.int8), "accumulator_dtype"),
  (optim.sgd, dict(weight_decay=float("inf")), "weight_decay"),
  (optim.sgd, dict(learning_rate=-1.0), "learning_rate"),
  (optim.adafactor, dict(min_dim_size_to_factor=-1), "min_dim_size_to_factor"),
  (optim.adafactor, dict(min_dim_size_to_factor=2.5), "min_dim_size_to_factor"),
  (optim.adafactor, dict(decay_rate=1.5), "decay_rate"),
  (optim.adafactor, dict(decay_rate=-0.1), "decay_rate"),
  (optim.adafactor, dict(decay_offset=-1), "decay_offset"),
  (optim.adafactor, dict(decay_offset=0.5), "decay_offset"),
  (optim.adafactor, dict(multiply_by_parameter_scale=1), "multiply_by_parameter_scale"),
  (optim.adafactor, dict(clipping_threshold=0.0), "clipping_threshold"),
  (optim.adafactor, dict(eps=0.0), "eps"),
  (optim.adafactor, dict(factored="no"), "factored"),
  (optim.adafactor, dict(weight_decay=-0.1), "weight_decay"),
  (optim.adafactor, dict(weight_decay_mode="l2"), "weight_decay_mode"),
]


@pytest.mark.parametrize(
  "fn,kwargs,name", BAD, ids=[f"{f.__name__}-{n}-{i}" for i, (f, _, n) in enumerate(BAD)]
)
def test_bad_arguments_raise_naming_the_argument(fn, kwargs, name):
  kwargs = {"learning_rate": 1e-2, **kwargs}
  with pytest.raises(ValueError, match=rf"^{name} = .*: must be "):
    fn(**kwargs)


@pytest.mark.parametrize(
  "alias,hyper,static",
  [
    (optim.lion, dict(b1=0.9, b2=0.95, weight_decay=0.1), ()),
    (optim.sgd, dict(momentum=0.9, weight_decay=0.01), ()),
    (
      optim.adafactor,
      dict(decay_rate=0.8, clipping_threshold=1.0, weight_decay=0.01),
      ("min_dim_size_to_factor",),
    ),
  ],
)
def test_injected_hyperparameters_match_fixed_ones(alias, hyper, static):
  # inject_hyperparams hands the alias arrays (traced under jit); the checks skip them.
  params = mlp(WIDTH)
  grads = gradients(params, steps=3)
  injected = optax.inject_hyperparams(alias, static_args=static)(1e-2, **hyper)
  got = run(injected, params, grads)
  want = run(alias(1e-2, **hyper), params, grads)
  # Python floats are folded in float64 (1 - b1 rounds once) where injected arrays
  # compute in float32: coefficients an ulp apart, then theta rounds its own way, an ulp
  # a step over 3 steps: within RTOL, ATOL (measured: equal).
  compare(got, want, rtol=RTOL, atol=ATOL)
  with pytest.raises(ValueError, match="^b2 = |^momentum = |^decay_rate = "):
    bad = {k: (1.5 if k in ("b2", "momentum", "decay_rate") else v) for k, v in hyper.items()}
    optax.inject_hyperparams(alias, static_args=static)(1e-2, **bad).init(params)


@pytest.mark.parametrize(
  "tx",
  [
    lambda: optim.lion(1e-2),
    lambda: optim.sgd(1e-2, 0.9),
    lambda: optim.adafactor(1e-2, min_dim_size_to_factor=8),
  ],
)
def test_updates_and_states_keep_their_dtypes(tx):
  tx = tx()
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), mlp(WIDTH))
  state = tx.init(params)
  dtypes = jax.tree.map(lambda x: x.dtype, state)
  update = jax.jit(tx.update)
  for g in gradients(params, steps=2):
    u, state = update(jax.tree.map(lambda x: x.astype(jnp.bfloat16), g), state, params)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
    assert jax.tree.map(lambda x: x.dtype, state) == dtypes
  assert update._cache_size() == 1  # nothing recompiles on the second call
