"""Losses: next-token cross-entropy with optional z-loss, and classification."""

import jax
import jax.numpy as jnp
import optax


def lm_loss(logits, targets, z_loss: float = 0.0):
  """Mean next-token cross-entropy; z_loss * logsumexp(logits)^2 keeps logits from drifting."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  if z_loss:
    loss = loss + z_loss * jnp.square(jax.nn.logsumexp(logits, axis=-1))
  return loss.mean()


def classification_loss(logits, labels):
  """Mean cross-entropy and accuracy."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, accuracy(logits, labels)


def accuracy(logits, labels):
  """Fraction where the label's logit is the largest (ties count as right). A max and a
  gather: XLA:CPU's argmax is a slow variadic reduction, too slow for every step."""
  picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  return jnp.mean(picked >= jnp.max(logits, axis=-1))
