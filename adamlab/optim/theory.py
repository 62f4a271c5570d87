"""Width and depth parametrizations in theory: each role's exponents.

A parametrization says how three numbers of every weight scale with the width n
(Everett et al. 2024): a forward multiplier n^-a, an init std n^-b and a learning
rate n^-c. They differ by layer role:

  input   finite fan-in, growing fan-out: embeddings, patch embeddings, biases, norms
  hidden  fan-in and fan-out both grow
  output  growing fan-in, finite fan-out: the readout
  fixed   nothing grows (a vocabulary-sized bias, a scalar): never rescaled

The roles come from comparing each leaf's shape at a base width with its shape at
the target width (the "base shapes" idea of microsoft/mup) and from how the model uses
it (`parametrize`, which builds the per-leaf table), so no model needs a
hand-written table. All exponents are applied to the width ratio m = n / n_base, so
at the base width every multiplier is exactly 1 and every parametrization is the
standard-parametrization model.

Learning-rate exponents are derived, not tabulated: a layer's effective weight moves
by n^-(a + c) per coordinate under Adam (n^-(a + c + g) under SGD, whose step carries
the gradient scale n^-g; n^-(a + b + c) under Adafactor, whose step carries the
parameter scale n^-b). Each layer's contribution to its output is then summed over
its fan-in, which is finite for inputs and grows for the others: by n under full
alignment, by sqrt(n) under none. Asking for Theta(1) contributions gives
a + c = 0, 1, 1 (full) or 0, 1/2, 1/2 (none) for Adam, and the rest follows, with
one more rule for SGD and Adafactor (see `exponents`). This reproduces the tables
of Everett et al. and of Tensor Programs V (tests check it).

Depth is optional and derived the same way (`depth_exponents`). A residual network
adds L branches, x + m_L^-alpha F_l(x), with m_L = depth / base_depth. The branch
multiplier m_L^-alpha (the model applies it, `branch_multiplier`) also multiplies the
gradient of every leaf inside the branch, so Adam's eps must shrink by m_L^-alpha
there. Under Adam a block leaf with learning rate m_L^-c moves its branch's output by
m_L^-(alpha + c); SGD's step carries the gradient, one more m_L^-alpha; Adafactor's
carries the parameter scale, which does not depend on depth. The L blocks' updates
add up (aligned), and asking for a Theta(1) total, each block Theta(1/L), gives
c = 1 - alpha (Adam, Adafactor) and 1 - 2 alpha (SGD). Embeddings, readout and norms
outside the blocks see no depth, and no init does. This is CompleteP at alpha = 1
(Dey et al. 2025: branches m_L^-alpha, hidden and LayerNorm lr m_L^(alpha - 1), hidden
eps / (m_d m_L^alpha)) and Depth-muP at alpha = 1/2 (Yang et al. 2023, Tensor Programs
VI: Adam lr / sqrt(L), SGD lr constant; Bordelon et al. 2023). Embedding, readout
and final norm keep their width eps, since their gradients pass through no branch
multiplier: the CompleteP paper's rule, which its public code (nanoGPT-mup) now
follows; its first version divided one global eps by m_d m_L^alpha, these leaves' too.
The depth rule assumes aligned blocks whatever `alignment` says of width: that is the
case both papers' tables are. At depth == base_depth nothing changes.
"""

from typing import NamedTuple

from adamlab.optim import _checks

ROLES = ("input", "hidden", "output", "fixed")
PARAMETRIZATIONS = ("sp", "ntk", "mup", "mfp", "mup_tp5")
FAMILIES = ("adam", "sgd", "adafactor", "muon", "muon_rms")
ALIGNMENTS = ("full", "none")

# Multiplier (a) and init (b) exponents per role (input, hidden, output).
# sp, ntk, mup, mfp: Everett et al. 2024. mup_tp5: the muP table of Tensor
# Programs V (no multipliers; init var 1/fan_in, 1/fan_in, 1/fan_in^2) -- the same
# model as Everett's mup up to the a/b/c symmetry.
_AB = {
  "sp": ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5)),
  "ntk": ((0.0, 0.5, 0.5), (0.0, 0.0, 0.0)),
  "mup": ((-0.5, 0.0, 0.5), (0.5, 0.5, 0.5)),
  "mfp": ((0.0, 0.5, 1.0), (0.0, 0.0, 0.0)),
  "mup_tp5": ((0.0, 0.0, 0.0), (0.0, 0.5, 1.0)),
}
# Adam's a + c per role for Theta(1) updates: the fan-in sum grows as n (aligned)
# or sqrt(n) (not aligned) for hidden and output layers, not at all for inputs.
_TARGET = {"full": (0.0, 1.0, 1.0), "none": (0.0, 0.5, 0.5)}


class Exponents(NamedTuple):
  """Width exponents of one role: each number scales as m^-exponent, m = n / n_base.

  Attributes:
    a: forward multiplier exponent.
    b: init std exponent.
    c: learning-rate exponent.
    g: gradient-scale exponent at init (Adam's eps must follow it).
  """

  a: float
  b: float
  c: float
  g: float


def exponents(parametrization: str, optimizer: str = "adam", alignment: str = "full") -> dict:
  """Width exponents per role for a parametrization, optimizer family and alignment.

  Adam moves a layer's effective weight by m^-(a + c) per coordinate; SGD's step also
  carries the gradient scale m^-g, Adafactor's the parameter scale m^-b. Summed over
  a fan-in that grows as m (full alignment) or sqrt(m) (none), Theta(1) changes of
  every layer's output give the learning-rate exponent c of each role.

  Args:
    parametrization: one of "sp", "ntk", "mup", "mfp", "mup_tp5".
    optimizer: the family, "adam" (Adam, AdamW, StableAdamW, Adam-atan2, Lion),
      "sgd", "adafactor", or "muon" (hidden matrices orthogonalized, the rest Adam;
      "muon_rms" with Moonshot's RMS-matched shape factor).
    alignment: "full" or "none", the assumption behind the learning-rate exponents.

  Muon's hidden step is the orthogonalized momentum O times a shape factor s and the
  learning rate: every singular value of O is about 1, so with the spectral factor
  s = sqrt(max(1, fan_out / fan_in)) the step's spectral norm is eta s m^-a, and it
  moves an input x (whose norm grows as sqrt(n)) by at most that times |x|, a change
  of Theta(eta s m^-a) per output coordinate. The spectral condition of Yang, Simon
  and Bernstein (|dW| of order sqrt(fan_out / fan_in), constant for hidden layers)
  asks for Theta(1): c = -a, whatever the alignment (an orthogonal step moves every
  direction of its span by the same amount). s is constant in width for hidden
  layers, so the same holds with no shape factor; Moonshot's RMS-matched factor
  0.2 sqrt(max(fan_in, fan_out)) grows as m^(1/2) and needs c = 1/2 - a instead:
  the family "muon_rms". Embeddings, readout and vectors take the Adam branch, and
  Adam's exponents.

  Returns:
    A dict {role: Exponents} for the roles "input", "hidden", "output", "fixed".

  Example:
    >>> from adamlab import optim
    >>> e = optim.exponents("mup")
    >>> e["hidden"].c, e["output"].a, e["output"].c
    (1.0, 0.5, 0.5)

  References:
    Everett et al. 2024, Scaling Exponents Across Parameterizations and
    Optimizers, arXiv:2407.05872 (Tables 1 and 2).
    Yang et al. 2022, Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
    Hyperparameter Transfer, arXiv:2203.03466 (Table 3).
    Yang, Simon and Bernstein 2023, A Spectral Condition for Feature Learning,
    arXiv:2310.17813 (Muon's hidden exponent).
  """
  _checks.one_of("parametrization", parametrization, PARAMETRIZATIONS)
  _checks.one_of("optimizer", optimizer, FAMILIES)
  _checks.one_of("alignment", alignment, ALIGNMENTS)
  a, b = _AB[parametrization]
  # Backward pass: the readout's effective weights have scale n^-(a_out + b_out), and
  # every hidden layer has a + b = 1/2, which keeps the backward signal's scale.
  back = a[2] + b[2]
  g = (a[0] + back, a[1] + back, a[2])
  target = list(_TARGET[alignment])
  if optimizer in ("muon", "muon_rms"):
    target[1] = 0.0 if optimizer == "muon" else 0.5  # the spectral condition (see above)
  if optimizer in ("sgd", "adafactor"):
    # SGD's step carries the gradient scale and Adafactor's the parameter scale, so a
    # readout that outgrew its init would change the backward signal (or its own
    # scale) and with it every other layer's step: keep it at its init scale.
    target[2] = max(target[2], a[2] + b[2])
  out = {}
  for i, role in enumerate(("input", "hidden", "output")):
    extra = {"sgd": g[i], "adafactor": b[i]}.get(optimizer, 0.0)
    out[role] = Exponents(a[i], b[i], target[i] - a[i] - extra, g[i])
  out["fixed"] = Exponents(0.0, 0.0, 0.0, 0.0)
  return out


class DepthExponents(NamedTuple):
  """Depth exponents of the leaves inside residual branches, powers of m_L^-1.

  Attributes:
    alpha: residual branch multiplier m_L^-alpha.
    c: learning rate m_L^-c.
    g: gradient scale m_L^-g (Adam's eps must follow it).
  """

  alpha: float
  c: float
  g: float


def depth_exponents(alpha: float, optimizer: str = "adam") -> DepthExponents:
  """Depth exponents of the leaves inside residual branches (block leaves).

  A residual network adds L branches x + m_L^-alpha F_l(x), m_L = L / L_base. A block
  update reaches the residual stream as m_L^-(alpha + c + extra), extra being what
  the step carries besides the learning rate (0 for Adam and Adafactor, the gradient
  scale alpha for SGD). The L updates add up aligned, so Theta(1) in total asks
  1 - alpha - c - extra = 0: Adam lr m_L^(alpha - 1), SGD lr m_L^(2 alpha - 1).

  Args:
    alpha: 0 is off (standard practice), 1/2 Depth-muP, 1 CompleteP; in [0, 1].
    optimizer: the family, "adam", "sgd" or "adafactor".

  Returns:
    A `DepthExponents`.

  Example:
    >>> from adamlab import optim
    >>> optim.depth_exponents(1.0)
    DepthExponents(alpha=1.0, c=0.0, g=1.0)

  References:
    Dey et al. 2025, Don't be lazy: CompleteP enables compute-efficient deep
    transformers, arXiv:2505.01618.
    Yang et al. 2023, Tensor Programs VI: Feature Learning in Infinite-Depth Neural
    Networks, arXiv:2310.02244.
  """
  _check_alpha(alpha)
  _checks.one_of("optimizer", optimizer, FAMILIES)
  if alpha == 0:
    return DepthExponents(0.0, 0.0, 0.0)
  # Muon's step, like Adam's, does not carry the gradient's scale.
  extra = alpha if optimizer == "sgd" else 0.0
  return DepthExponents(float(alpha), 1.0 - alpha - extra, float(alpha))


def branch_multiplier(depth: float, base_depth: float, alpha: float) -> float:
  """m_L^-alpha with m_L = depth / base_depth: what a residual branch is multiplied by.

  Args:
    depth: residual blocks of the model.
    base_depth: residual blocks at the base depth; > 0.
    alpha: the branch exponent, in [0, 1].

  Returns:
    A float, exactly 1.0 at the base depth.

  Example:
    >>> from adamlab import optim
    >>> optim.branch_multiplier(16, 4, 0.5)
    0.5

  References:
    Dey et al. 2025, arXiv:2505.01618; Yang et al. 2023, arXiv:2310.02244.
  """
  _check_alpha(alpha)
  return depth_ratio(depth, base_depth) ** -alpha


def _check_alpha(alpha) -> None:
  _checks.number(
    "alpha", alpha, 0.0, 1.0, allowed="a number in [0, 1] (1/2 Depth-muP, 1 CompleteP)"
  )


def depth_ratio(depth, base_depth) -> float:
  _checks.positive("depth", depth)
  _checks.positive("base_depth", base_depth)
  return depth / base_depth


def depth_rule(depth, base_depth, alpha, optimizer):
  """(m_L, DepthExponents), or None when no depth argument is given."""
  if depth is None and base_depth is None and alpha is None:
    return None
  if alpha is None:
    _checks.fail("alpha", alpha, "a number in [0, 1] when depth is given")
  return depth_ratio(depth, base_depth), depth_exponents(alpha, optimizer)
