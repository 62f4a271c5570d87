"""The `adamlab` command. A user's mistake is one line on stderr and exit code 2."""

import argparse
import sys

from adamlab.optim.config_error import ConfigError


def main(argv=None):
  parser = argparse.ArgumentParser(prog="adamlab", description=__doc__)
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("demo", help="a short demo of the optimizers")
  args = parser.parse_args(argv)
  try:
    if args.command == "demo":
      from adamlab import demo
      demo.main()
  except ConfigError as err:
    print(f"adamlab: error: {err}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
