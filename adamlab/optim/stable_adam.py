"""StableAdamW: AdamW with per-tensor update clipping, and AdamW with width tables.

Adam's second moment u_t can fall behind the gradients it is meant to track; then
g_t^2 / u_t is large and the update is too big. StableAdamW measures this per tensor,
RMS_t = sqrt(mean(g_t^2 / u_t)), and divides that tensor's step size by
max(1, RMS_t / clip_threshold). RMS_t of the last step stays in the state (also with
clipping off), which is how RMS spikes are observed; read it with `last_rms`.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from adamlab.optim import _adam, _checks
from adamlab.optim.chain import ADAM_FAMILIES, check_family, with_learning_rate
from adamlab.optim.table import eps_multipliers
from adamlab.optim.state import states_of


class ScaleByStableAdamState(NamedTuple):
  """State of `scale_by_stable_adam`.

  Attributes:
    count: int32 step counter, t - 1 before the update.
    mu: first moment (the paper's v_t), like the params.
    nu: second moment u_t, like the params.
    rms: per-tensor RMS_t of the last step, float32 scalars like the params.
  """

  count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
  mu: optax.Updates
  nu: optax.Updates
  rms: Any


def _check_adam_args(b1, b2, eps, eps_root, mu_dtype, nesterov) -> None:
  _checks.decay_rate("b1", b1)
  _checks.decay_rate("b2", b2)
  _checks.non_negative("eps", eps)
  _checks.non_negative("eps_root", eps_root)
  _checks.float_dtype("mu_dtype", mu_dtype)
  _checks.boolean("nesterov", nesterov)


def _check_clip(clip_threshold) -> None:
  if clip_threshold is not None:
    _checks.positive("clip_threshold", clip_threshold)


def scale_by_stable_adam(
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  *,
  nesterov: bool = False,
  clip_threshold: Optional[float] = 1.0,
  eps_scale: Any = None,
  track_rms: bool = True,
) -> optax.GradientTransformation:
  r"""Adam's direction with per-tensor update clipping (StableAdamW).

  Per tensor, with bias-corrected moments (what the paper's debiased betas give):

  .. math::

    \hat m_t = \frac{\beta_1 m_{t-1} + (1 - \beta_1) g_t}{1 - \beta_1^t}, \quad
    \hat u_t = \frac{\beta_2 u_{t-1} + (1 - \beta_2) g_t^2}{1 - \beta_2^t}

    \text{RMS}_t = \sqrt{\operatorname{mean}(g_t^2 / \max(\hat u_t + \epsilon_{root},
    \epsilon^2))}, \quad d_t = \frac{\hat m_t}{\sqrt{\hat u_t + \epsilon_{root}} + \epsilon}
    \Big/ \max\Big(1, \frac{\text{RMS}_t}{\text{clip\_threshold}}\Big)

  With nesterov, m_hat is Nesterov's look-ahead, as in `optax.scale_by_adam`:
  beta_1 m_t / (1 - beta_1^(t+1)) + (1 - beta_1) g_t / (1 - beta_1^t).

  The positional arguments are `optax.scale_by_adam`'s, in its order, with its
  defaults (b2 0.999, eps 1e-8); adamlab's own are keyword-only. The paper trained
  with b2 0.99 and eps 1e-6, as torch-optimi's StableAdamW defaults do; pass them to
  match. eps matters for loss spikes: compare optimizers at the same eps.

  Args:
    b1: decay of the first moment, in [0, 1).
    b2: decay of the second moment, in [0, 1).
    eps: added to sqrt(u_t + eps_root), >= 0.
    eps_root: added to u_t inside the square root, >= 0 (optax's; it keeps the
      gradient of the update finite when differentiating through it).
    mu_dtype: floating dtype of the first moment; None keeps the params' dtype.
    nesterov: Nesterov momentum (NAdam's m_hat), True or False.
    clip_threshold: the RMS_t threshold, > 0, or None for no clipping (then exactly
      `optax.scale_by_adam`).
    eps_scale: a tree like the params of floats multiplying eps per leaf (a width
      table's `eps_multipliers`), or None.
    track_rms: keep RMS_t in the state when clipping is off (one reduction per leaf).

  Returns:
    An `optax.GradientTransformation` whose state is `ScaleByStableAdamState`; its
    update raises ValueError naming the leaf for gradients of another shape than the
    params.

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones((2, 2))}
    >>> tx = optim.scale_by_stable_adam()
    >>> updates, state = tx.update(params, tx.init(params))
    >>> round(float(updates["w"][0, 0]), 4), round(float(state.rms["w"]), 4)
    (1.0, 1.0)

  References:
    Wortsman et al. 2023, Stable and low-precision training for large-scale
    vision-language models, arXiv:2304.13013 (Algorithm 2).
    Dozat 2016, Incorporating Nesterov Momentum into Adam (nesterov).
  """
  _check_adam_args(b1, b2, eps, eps_root, mu_dtype, nesterov)
  _check_clip(clip_threshold)

  def init_fn(params):
    mu, nu = _adam.zeros_moments(params, mu_dtype)
    rms = jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params)
    return ScaleByStableAdamState(jnp.zeros([], jnp.int32), mu, nu, rms)

  def update_fn(updates, state, params=None):
    del params
    _checks.update_shapes(updates, state.nu)
    count = optax.safe_increment(state.count)
    eps_tree = _adam.leaf_eps(eps, eps_scale, updates)

    g32, mu, nu, mu_hat, nu_hat = _adam.moments(
      updates, state.mu, state.nu, count, b1, b2, nesterov
    )

    def one(g, g32, m_hat, v_hat, v_new, e):
      u = m_hat / (jnp.sqrt(v_hat + eps_root) + e)
      if clip_threshold is not None or track_rms:
        rms = _rms(g32, v_new, e, eps_root, count, b2)
      else:
        rms = jnp.zeros([], jnp.float32)
      if clip_threshold is not None:
        u = u / jnp.maximum(1.0, rms / clip_threshold).astype(u.dtype)
      return u.astype(g.dtype), rms

    out = jax.tree.map(one, updates, g32, mu_hat, nu_hat, nu, eps_tree)
    u, rms = _adam.unzip(out, updates, 2)
    return u, ScaleByStableAdamState(
      count, _adam.cast_like(mu, state.mu), _adam.cast_like(nu, state.nu), rms
    )

  return optax.GradientTransformation(init_fn, update_fn)


def stable_adamw(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  mask: Any = None,
  *,
  nesterov: bool = False,
  clip_threshold: Optional[float] = 1.0,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
  track_rms: bool = True,
) -> optax.GradientTransformation:
  r"""StableAdamW: AdamW whose step is clipped per tensor by its RMS_t.

  .. math::

    \theta \leftarrow \theta - \eta_t k \, (d_t + \lambda \theta)

  with d_t from `scale_by_stable_adam`, k the leaf's learning-rate multiplier of the
  `parametrization` table (1 without one) and decay as `with_learning_rate` says.
  Weight decay uses the unclipped learning rate, as in the paper.

  The arguments up to `mask` are `optax.adamw`'s, in its order (positional too), with
  its names and defaults, and so is `nesterov`; adamlab's own are keyword-only. So
  swapping `optax.adamw(...)` for `stable_adamw(...)` changes only the clipping, and
  with `clip_threshold=None` the updates are `optax.adamw`'s bit for bit for float32
  gradients, whatever mu_dtype (bfloat16 or float16 gradients: the moments are
  computed in float32 here, in the low precision by optax). The paper trained with
  b2 0.99 and eps 1e-6 (torch-optimi's defaults are b2 0.99, eps 1e-6,
  weight decay 0): pass them to match. eps decides much of what is called a loss
  spike; compare optimizers at the same eps. In the memorization regimes of
  experiments/loss_spikes (README: "What to do"), eps 1e-6 removed every full-batch
  spike of AdamW and StableAdamW alike, while the clipping changed no count; and in
  experiments/warmup it did not replace warmup (GPT and ViT, 200 steps).

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    b1: decay of the first moment, in [0, 1).
    b2: decay of the second moment, in [0, 1).
    eps: added to sqrt(u_t + eps_root), >= 0; times the table's eps multiplier per
      leaf.
    eps_root: added to u_t inside the square root, >= 0.
    mu_dtype: floating dtype of the first moment; None keeps the params' dtype.
    weight_decay: lambda >= 0, or a schedule (default optax.adamw's 1e-4).
    mask: which leaves decay (None: all, as optax.adamw).
    nesterov: Nesterov momentum (NAdamW), True or False.
    clip_threshold: the RMS_t threshold, > 0, or None for no clipping (AdamW).
    parametrization: a table from `parametrize(optimizer="adam")`, or None.
    weight_decay_mode: "coupled", "width_scaled" or "independent".
    track_rms: keep RMS_t in the state when clipping is off.

  Returns:
    An `optax.GradientTransformation`; its update raises ValueError naming the leaf
    for gradients of another shape than the params.

  Raises:
    ValueError: naming the argument, for any value out of its range, or a table
      built for another optimizer family than "adam".

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones((2, 2))}
    >>> tx = optim.stable_adamw(1e-3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> round(float(optim.last_rms(state)["w"]), 4)  # g^2 / u_t at the first step
    1.0

  References:
    Wortsman et al. 2023, Stable and low-precision training for large-scale
    vision-language models, arXiv:2304.13013.
    Loshchilov and Hutter 2019, Decoupled Weight Decay Regularization,
    arXiv:1711.05101.
  """
  check_family(parametrization, ADAM_FAMILIES)
  direction = scale_by_stable_adam(
    b1,
    b2,
    eps,
    eps_root,
    mu_dtype,
    nesterov=nesterov,
    clip_threshold=clip_threshold,
    eps_scale=eps_multipliers(parametrization),
    track_rms=track_rms,
  )
  return with_learning_rate(
    direction,
    learning_rate,
    weight_decay,
    mask,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
  )


def adamw(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  mask: Any = None,
  *,
  nesterov: bool = False,
  parametrization: Any = None,
  weight_decay_mode: str = "coupled",
  track_rms: bool = True,
) -> optax.GradientTransformation:
  r"""AdamW with a width (and depth) table: per-leaf learning rate and eps.

  .. math::

    \theta \leftarrow \theta - \eta_t k \Big(\frac{\hat m_t}{\sqrt{\hat v_t +
    \epsilon_{root}} + \epsilon e} + \lambda \theta\Big)

  with k and e the leaf's learning-rate and eps multipliers from `parametrization`.
  Its signature is `optax.adamw`'s up to `nesterov` (positional arguments in optax's
  order, names and defaults); adamlab's own are keyword-only. Without a table it is
  `optax.adamw` bit for bit (float32 gradients, as `stable_adamw` says), with RMS_t in
  the state (`last_rms`; `track_rms=False` drops that reduction). optax's eps 1e-8
  left every loss spike of experiments/loss_spikes' full-batch memorization regime in
  place; 1e-6 removed them at no measured cost (README: "What to do").

  Args:
    learning_rate: a finite number >= 0 or a schedule.
    b1: decay of the first moment, in [0, 1).
    b2: decay of the second moment, in [0, 1).
    eps: added to sqrt(v_t + eps_root), >= 0.
    eps_root: added to v_t inside the square root, >= 0.
    mu_dtype: floating dtype of the first moment; None keeps the params' dtype.
    weight_decay: lambda >= 0, or a schedule (default optax.adamw's 1e-4).
    mask: which leaves decay (None: all, as optax.adamw).
    nesterov: Nesterov momentum (NAdamW), True or False.
    parametrization: a table from `parametrize(optimizer="adam")`, or None.
    weight_decay_mode: "coupled", "width_scaled" or "independent".
    track_rms: keep RMS_t (the StableAdamW statistic) in the state.

  Returns:
    An `optax.GradientTransformation`; its update raises ValueError naming the leaf
    for gradients of another shape than the params.

  Raises:
    ValueError: naming the argument, for any value out of its range, or a table
      built for another optimizer family than "adam".

  Example:
    >>> import jax.numpy as jnp
    >>> from adamlab import optim
    >>> mlp = lambda n: {"w_in": jnp.ones((4, n)), "w_out": jnp.ones((n, 2))}
    >>> table = optim.parametrize(base=mlp(8), target=mlp(32))
    >>> tx = optim.adamw(1e-3, weight_decay=0.0, parametrization=table)
    >>> updates, _ = tx.update(mlp(32), tx.init(mlp(32)), mlp(32))
    >>> round(float(updates["w_out"][0, 0]), 6)  # 1e-3 * lr multiplier 1/2
    -0.0005

  References:
    Loshchilov and Hutter 2019, Decoupled Weight Decay Regularization,
    arXiv:1711.05101.
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872.
  """
  return stable_adamw(
    learning_rate,
    b1,
    b2,
    eps,
    eps_root,
    mu_dtype,
    weight_decay,
    mask,
    nesterov=nesterov,
    clip_threshold=None,
    parametrization=parametrization,
    weight_decay_mode=weight_decay_mode,
    track_rms=track_rms,
  )


def _rms(g32, v_new, e, eps_root, count, b2):
  """RMS_t = sqrt(mean(g^2 / max(u_t + eps_root, eps^2))) of one leaf, a float32 scalar.

  u_t already holds g_t, so g^2/u <= 1/(1-b2) and eps^2 mainly keeps 0/0 out (u_t = 0
  after zero gradients). The debiased u_t is nu / c with c = 1 - b2^t, so
  g^2 / max(u_t + eps_root, eps^2) = c g^2 / max(nu + c eps_root, c eps^2): on the
  stored nu, XLA fuses the mean into one pass over g and nu instead of writing g^2
  and u_t to memory first. eps_root = 0 adds exact zeros: RMS_t is unchanged.
  """
  dt = g32.dtype
  c = (1 - b2 ** count.astype(dt)).astype(dt)
  # (tiny: c eps^2 must not flush to 0 for eps below ~1e-18, or 0/0 comes back)
  floor = jnp.maximum(c * e * e, jnp.finfo(dt).tiny)
  ratio = g32 * (g32 / jnp.maximum(v_new + c * eps_root, floor))
  return jnp.sqrt(c * jnp.mean(ratio)).astype(jnp.float32)


def last_rms(opt_state: Any) -> Any:
  """Per-tensor RMS_t of the last step, from any optimizer state holding StableAdamW.

  Args:
    opt_state: a state holding one `ScaleByStableAdamState`, through `optax.chain`,
      `masked`, `MultiSteps`, `inject_hyperparams` or `skip_spikes`.

  Returns:
    A tree like the params of float32 scalars (masked-out leaves stay
    `optax.MaskedNode`).

  Raises:
    ValueError: if the state holds no StableAdamW part, or several.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from adamlab import optim
    >>> params = {"w": jnp.ones(3)}
    >>> tx = optax.MultiSteps(optim.stable_adamw(1e-3), every_k_schedule=2)
    >>> optim.last_rms(tx.init(params))["w"].dtype
    dtype('float32')

  References:
    Wortsman et al. 2023, arXiv:2304.13013 (Figure 9: RMS spikes precede loss
    spikes).
  """
  found = states_of(opt_state, ScaleByStableAdamState)
  if len(found) != 1:
    raise ValueError(
      f"opt_state holds {len(found)} ScaleByStableAdamState: must hold "
      "exactly one (from stable_adamw, adamw or scale_by_stable_adam)"
    )
  return found[0].rms
