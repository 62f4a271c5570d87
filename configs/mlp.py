"""The 2-hidden-layer MLP of Tensor Programs V on Fashion-MNIST. Presets: `configs/mlp.py:mup,stable_adamw`."""

from adamlab.train.config import base, with_presets


def get_config(arg: str = ""):
  config = base("mlp")
  config.data.name = "fashion_mnist"
  config.model.update(dict(width=256, base_width=256))
  config.optimizer.update(dict(name="sgd", learning_rate=0.1, warmup_steps=0, schedule="constant"))
  return with_presets(config, arg)
