"""ViT on 28x28 grayscale images (Fashion-MNIST). Presets: `configs/vit.py:mup,stable_adamw`."""

from adamlab.train.config import base, with_presets


def get_config(arg: str = ""):
  config = base("vit")
  config.data.name = "fashion_mnist"
  config.model.update(dict(width=128, base_width=128, depth=2, num_heads=4, patch_size=4))
  config.optimizer.update(dict(learning_rate=1e-3, warmup_steps=100))
  return with_presets(config, arg)
