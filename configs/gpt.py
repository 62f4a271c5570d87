"""GPT on byte-level text. Presets: `configs/gpt.py:mup,stable_adamw`."""

from adamlab.train.config import base, with_presets


def get_config(arg: str = ""):
  config = base("gpt")
  config.model.update(dict(width=128, base_width=128, depth=2, num_heads=4, seq_len=128))
  config.optimizer.update(dict(learning_rate=3e-3, warmup_steps=100))
  return with_presets(config, arg)
