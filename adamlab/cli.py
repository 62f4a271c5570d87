"""The `adamlab` command. A user's mistake is one line on stderr and exit code 2."""

import argparse
import os
import sys

from adamlab.errors import ConfigError
from adamlab.train.preemption import EXIT_PREEMPTED, Preempted


class _Parser(argparse.ArgumentParser):
  """argparse, but a bad argument is one line, not a usage block."""

  def error(self, message):
    raise ConfigError(f"{self.prog}: {message}")


def _no_extra(command: str, extra) -> None:
  if extra:
    raise ConfigError(f"adamlab {command}: unrecognized arguments: {' '.join(extra)}")


def _sizes(flag: str, text: str):
  try:
    sizes = [int(w) for w in text.split(",")]
  except ValueError:
    sizes = []
  if not sizes or min(sizes) < 1:
    raise ConfigError(flag, text, "comma-separated integers >= 1, e.g. 64,128,256")
  return sizes


def coordcheck(args, extra):
  import ml_collections
  from adamlab import analysis
  from adamlab.train.config import load
  from adamlab.train import coordcheck as cc
  from adamlab.train.checks import check_config

  config, rest = load(extra)
  _no_extra("coordcheck", rest)
  if args.depths and args.widths:
    raise ConfigError("--depths", args.depths, "given without --widths (one axis at a time)")
  axis, sizes = (
    ("depth", _sizes("--depths", args.depths))
    if args.depths
    else ("width", _sizes("--widths", args.widths or "64,128,256,512"))
  )
  if args.steps < 0:
    raise ConfigError("--steps", args.steps, "an integer >= 0")
  if axis == "depth" and "depth" not in config.model:
    raise ConfigError("--depths", args.depths, f"a model with blocks, not {config.model.name!r}")
  for size in sizes:  # every size is checked before anything runs or is written
    c = ml_collections.ConfigDict(config.to_dict())
    c.model[axis] = size
    check_config(c)
  rows = cc.run(config, **{axis + "s": sizes}, steps=args.steps, seed=config.seed)
  os.makedirs(args.out, exist_ok=True)
  analysis.write_csv(rows, os.path.join(args.out, "coords.csv"))
  title = f"{config.model.name}, {config.parametrization}, {config.optimizer.name}"
  if axis == "depth":
    title += f", alpha {config.model.alpha}"
  analysis.plot_coords(rows, os.path.join(args.out, "coordcheck.png"), title, x=axis)
  print(
    f"coordinate check: {title}; {axis}s {sizes}; slope of log2 RMS vs log2 {axis} "
    f"after {args.steps} steps"
  )
  for layer, slope in sorted(analysis.slopes(rows, x=axis).items()):
    print(f"  {layer:<24}{slope:+.3f}")
  print(f"wrote {args.out}/coords.csv and {args.out}/coordcheck.png")


def train(args, extra):
  from adamlab.train import command

  command.train(args.workdir, extra)


def plot(args, extra):
  from adamlab.train import plots

  _no_extra("plot", extra)
  if not os.path.isfile(os.path.join(args.run_dir, "metrics.jsonl")):
    raise ConfigError("RUN_DIR", args.run_dir, "a run directory with metrics.jsonl")
  for path in plots.plot_run(args.run_dir):
    print(f"wrote {path}")


def data_fetch(args, extra):
  from adamlab import data

  _no_extra("data fetch", extra)
  data.fetch(args.dir, args.source)


def sweep(args, extra):
  from adamlab.sweep import local

  _no_extra("sweep", extra)
  status = local.run(args.config, args.workdir, args.workers, args.backend, args.pack, args.address)
  print(open(os.path.join(args.workdir, "results.md")).read(), end="")
  print(
    f"sweep directory: {args.workdir} ({sum(s != 'failed' for s in status.values())}"
    f"/{len(status)} runs finished; results.csv, results.md)"
  )
  if any(s == "failed" for s in status.values()):
    sys.exit(1)


def search(args, extra):
  from adamlab.sweep import search as search_lib

  _no_extra("search", extra)
  out = search_lib.run(
    args.config, args.workdir, args.workers, args.backend, args.pack, args.address
  )
  print(open(os.path.join(args.workdir, "classification.md")).read(), end="")
  print(f"search directory: {args.workdir} (choices.md, classification.md, sensitivity/)")
  if out["failed"]:
    print(f"adamlab: {out['failed']} run(s) failed; see {args.workdir}/logs", file=sys.stderr)
    sys.exit(1)


def fit(args, extra):
  from adamlab.sweep import fit as fit_lib

  _no_extra("fit", extra)
  out = fit_lib.run(args.config, args.workdir, args.workers, args.backend, args.pack, args.address)
  print(open(os.path.join(args.workdir, "rules.md")).read(), end="")
  print(f"fit directory: {args.workdir} (rules.md, rules.json, optima.csv, rules/)")
  if out["failed"]:
    print(f"adamlab: {out['failed']} run(s) failed; see {args.workdir}/logs", file=sys.stderr)
    sys.exit(1)


def results(args, extra):
  from adamlab.sweep import results as results_lib

  _no_extra("results", extra)
  if not os.path.isfile(os.path.join(args.sweep_dir, "sweep.json")):
    raise ConfigError("SWEEP_DIR", args.sweep_dir, "a sweep directory with sweep.json")
  print(results_lib.write(args.sweep_dir), end="")


def main(argv=None):
  parser = _Parser(prog="adamlab", description=__doc__)
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  commands.add_parser("demo", help="a short demo of the optimizers")
  cc = commands.add_parser(
    "coordcheck",
    help="coordinate check: layer output sizes across widths or depths",
    description="adamlab coordcheck --config configs/gpt.py:mup --widths 64,128,256 "
    "(or --depths 2,4,8,16) --steps 5 --out DIR [--config.a.b=value ...]",
  )
  cc.add_argument("--widths", default="", help="default 64,128,256,512")
  cc.add_argument("--depths", default="", help="blocks per model, at the config's width")
  cc.add_argument("--steps", type=int, default=5)  # >= 0, checked in coordcheck()
  cc.add_argument("--out", default="coordcheck")
  tr = commands.add_parser(
    "train",
    help="train one config",
    description="adamlab train --config configs/gpt.py:mup --workdir DIR "
    "[--config.a.b=value ...]; exit code 75: preempted "
    "(SIGTERM/SIGINT), checkpointed, run it again",
  )
  tr.add_argument("--workdir", required=True)
  pl = commands.add_parser("plot", help="loss / lr / RMS plots of a run directory")
  pl.add_argument("run_dir", metavar="RUN_DIR")
  da = commands.add_parser("data", help="data sets")
  da_commands = da.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
  fe = da_commands.add_parser("fetch", help="GCIDE and Fashion-MNIST from Debian packages")
  fe.add_argument("--dir", default="", help="data directory (default $ADAMLAB_DATA or ./data)")
  fe.add_argument("--from", dest="source", default="", help="copy from this folder instead")
  sw = commands.add_parser(
    "sweep",
    help="run a sweep config's grid",
    description="adamlab sweep --config configs/sweeps/X.py --workdir DIR "
    "[--workers N] [--backend local|ray] [--pack K]",
  )
  se = commands.add_parser(
    "search",
    help="coordinate-descent hyperparameter search",
    description="adamlab search --config configs/search/X.py --workdir "
    "DIR [--workers N] [--backend local|ray] [--pack K]",
  )
  fi = commands.add_parser(
    "fit",
    help="scaling rules: search a grid of scales, fit each optimum, predict held-out scales",
    description="adamlab fit --config configs/rules/X.py --workdir DIR "
    "[--workers N] [--backend local|ray] [--pack K]",
  )
  for p in (sw, se, fi):
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--address", default="", help="Ray cluster address (default: start Ray here)")
    p.add_argument(
      "--pack",
      type=int,
      default=1,
      help="train up to K runs differing only in optimizer scalars as one program",
    )
  rs = commands.add_parser("results", help="results.csv and tables of a sweep directory")
  rs.add_argument("sweep_dir", metavar="SWEEP_DIR")
  try:
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
      _no_extra("demo", extra)
      from adamlab import demo

      demo.main()
    elif args.command == "coordcheck":
      coordcheck(args, extra)
    else:
      {
        "train": train,
        "plot": plot,
        "data": data_fetch,
        "sweep": sweep,
        "search": search,
        "fit": fit,
        "results": results,
      }[args.command](args, extra)
  except ConfigError as err:
    print(f"adamlab: error: {err}", file=sys.stderr)
    sys.exit(2)
  except Preempted as err:  # (a sweep or search; `adamlab train` says so itself)
    print(f"adamlab: preempted: {err}", file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
  main()
