"""NumPy references written from the source documents, one step at a time, float64."""

import numpy as np


def stable_adamw(grads, theta0, lrs, b1, b2, eps, wd, clip, eps_root=0.0, nesterov=False):
  """Algorithm 2 of Wortsman et al. 2023 (arXiv:2304.13013), literally: debiased betas, per-tensor RMS_t, update clipping.

  eps_root is added to u_t under the square root (and in RMS_t's denominator); nesterov
  replaces v_t in the step by Dozat's (2016) look-ahead
  b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t), with m_t = (1 - b1^t) v_t the
  undebiased first moment. Returns the params after every step and the RMS_t of every
  step.
  """
  theta = np.array(theta0, np.float64)
  v = np.zeros_like(theta)
  u = np.zeros_like(theta)
  thetas, rmss = [], []
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    g = np.asarray(g, np.float64)
    b1_hat = b1 * (1 - b1 ** (t - 1)) / (1 - b1**t)
    b2_hat = b2 * (1 - b2 ** (t - 1)) / (1 - b2**t)
    v = b1_hat * v + (1 - b1_hat) * g
    u = b2_hat * u + (1 - b2_hat) * g**2
    rms = np.sqrt(np.mean(g**2 / np.maximum(u + eps_root, eps**2)))
    eta = lr if clip is None else lr / max(1.0, rms / clip)
    d = v
    if nesterov:
      d = b1 * (1 - b1**t) * v / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
    theta = theta - lr * wd * theta - eta * d / (np.sqrt(u + eps_root) + eps)
    thetas.append(theta.copy())
    rmss.append(rms)
  return thetas, rmss


def adam_atan2(grads, theta0, lrs, b1, b2, a, b, wd, nesterov=False):
  """Adam-atan2 (Everett et al. App. C): a * atan2(m_hat, b * sqrt(v_hat)), decoupled decay.

  nesterov: m_hat is Dozat's (2016) look-ahead b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t /
  (1 - b1^t).
  """
  theta = np.array(theta0, np.float64)
  m = np.zeros_like(theta)
  v = np.zeros_like(theta)
  thetas = []
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    g = np.asarray(g, np.float64)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    if nesterov:
      m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
    theta = theta - lr * wd * theta - lr * a * np.arctan2(m_hat, b * np.sqrt(v_hat))
    thetas.append(theta.copy())
  return thetas


def adamw(grads, theta0, lrs, decays, b1, b2, eps):
  """Adam with bias-corrected moments and decoupled decay, one leaf:

      theta <- theta - decay_t * theta - lr_t * m_hat / (sqrt(v_hat) + eps)

  lrs and decays are this leaf's per step: the caller writes the schedule, the
  per-leaf multipliers and the weight-decay mode into them. Returns the params after
  every step.
  """
  theta = np.array(theta0, np.float64)
  m = np.zeros_like(theta)
  v = np.zeros_like(theta)
  thetas = []
  for t, (g, lr, decay) in enumerate(zip(grads, lrs, decays), start=1):
    g = np.asarray(g, np.float64)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    theta = theta - decay * theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    thetas.append(theta.copy())
  return thetas
