"""python -m adamlab.train --config FILE[:PRESETS] --workdir DIR [--config.a.b=v ...]"""

import sys

from adamlab.cli import main

if __name__ == "__main__":
  main(["train", *sys.argv[1:]])
