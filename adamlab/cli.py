"""The `adamlab` command. A user's mistake is one line on stderr and exit code 2."""

import argparse
import os
import sys

from adamlab.optim.config_error import ConfigError


class _Parser(argparse.ArgumentParser):
  """argparse, but a bad argument is one line, not a usage block."""

  def error(self, message):
    raise ConfigError(f"{self.prog}: {message}")


def _widths(text: str):
  try:
    widths = [int(w) for w in text.split(",")]
  except ValueError:
    raise ConfigError("--widths", text, "comma-separated integers >= 1, e.g. 64,128,256")
  if not widths or min(widths) < 1:
    raise ConfigError("--widths", text, "comma-separated integers >= 1, e.g. 64,128,256")
  return widths


def coordcheck(args, extra):
  import ml_collections
  from adamlab import analysis, models
  from adamlab.config import load
  from adamlab.models import coordcheck as cc

  config, rest = load(extra)
  if rest:
    raise ConfigError(f"adamlab coordcheck: unrecognized arguments: {' '.join(rest)}")
  widths = _widths(args.widths)
  for w in widths:  # every width is checked before anything runs or is written
    c = ml_collections.ConfigDict(config.to_dict())
    c.model.width = w
    models.validate(c)
  rows = cc.run(config, widths, steps=args.steps, seed=config.seed)
  os.makedirs(args.out, exist_ok=True)
  analysis.write_csv(rows, os.path.join(args.out, "coords.csv"))
  title = f"{config.model.name}, {config.parametrization}, {config.optimizer.name}"
  analysis.plot_coords(rows, os.path.join(args.out, "coordcheck.png"), title)
  print(f"coordinate check: {title}; widths {widths}; slope of log2 mean|x| vs log2 width "
        f"after {args.steps} steps")
  for layer, slope in sorted(analysis.slopes(rows).items()):
    print(f"  {layer:<24}{slope:+.3f}")
  print(f"wrote {args.out}/coords.csv and {args.out}/coordcheck.png")


def main(argv=None):
  parser = _Parser(prog="adamlab", description=__doc__)
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  commands.add_parser("demo", help="a short demo of the optimizers")
  cc = commands.add_parser(
      "coordcheck", help="coordinate check: layer output sizes across widths",
      description="adamlab coordcheck --config configs/gpt.py:mup --widths 64,128,256 "
                  "--steps 5 --out DIR [--config.a.b=value ...]")
  cc.add_argument("--widths", default="64,128,256,512")
  cc.add_argument("--steps", type=int, default=5)
  cc.add_argument("--out", default="coordcheck")
  try:
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
      if extra:
        raise ConfigError(f"adamlab demo: unrecognized arguments: {' '.join(extra)}")
      from adamlab import demo
      demo.main()
    elif args.command == "coordcheck":
      coordcheck(args, extra)
  except ConfigError as err:
    print(f"adamlab: error: {err}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
