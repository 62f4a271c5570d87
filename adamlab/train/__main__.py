"""python -m adamlab.train --config FILE[:PRESETS] --workdir DIR [--config.a.b=v ...]"""

from adamlab.train.command import main

if __name__ == "__main__":
  main()
