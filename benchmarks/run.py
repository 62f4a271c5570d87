"""Every benchmark, one report: benchmarks/REPORT.md and benchmarks/report.json.

    python benchmarks/run.py [--quick] [--only optim,trainer,data,sweep,gpu,memory]

Each section is its module's run() and report(); every figure is a ratio against a
baseline measured in the same process, with min (best) and median over repeats. A
section that fails records its error and the others still run. --only reruns some
sections and keeps the others' results from an existing report.json.
"""

import argparse
import datetime
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # `from common import ...` in the benchmark modules

import data_pipeline  # noqa: E402
import gpu  # noqa: E402
import memory  # noqa: E402
import optim_overhead  # noqa: E402
import sweep_packing  # noqa: E402
import trainer_overhead  # noqa: E402
from common import machine  # noqa: E402

# Keyword arguments of each section's run(); quick takes minutes on two CPU cores.
SIZES = {
  "full": dict(
    optim=dict(n_params=(10e6, 100e6), repeats=10, rounds=4),
    trainer=dict(widths=(32, 128, 512), n_chunks=30, repeats=3),
    data=dict(batches=200, repeats=5, step_repeats=20),
    sweep=dict(widths=(32, 64, 128, 256), pack=4, steps=100, repeats=2),
    gpu=dict(repeats=10),
    memory=dict(),
  ),
  "quick": dict(
    optim=dict(n_params=(10e6,), repeats=5, rounds=2),
    trainer=dict(widths=(32, 128), n_chunks=10, repeats=1),
    data=dict(batches=50, repeats=3, step_repeats=10),
    sweep=dict(widths=(32, 128), pack=4, steps=30, repeats=1),
    gpu=dict(repeats=5),
    memory=memory.QUICK,
  ),
}


def run_optim(n_params, repeats, rounds):
  return {f"{n / 1e6:.0f}M": optim_overhead.run(n, repeats, rounds) for n in n_params}


def report_optim(result):
  return "\n\n".join(optim_overhead.report(r, target=1.10) for r in result.values())


# name: (title with the target, run, report)
SECTIONS = {
  "optim": ("Optimizer update time vs optax.adamw (target <= 1.10x)", run_optim, report_optim),
  "trainer": (
    "Trainer overhead: `adamlab train`'s loop vs a plain jit loop, steady state (target >= 0.95x)",
    trainer_overhead.run,
    lambda r: trainer_overhead.report(r, target=0.95),
  ),
  "data": (
    "Data pipeline: host batches/s vs training steps/s (target >= 10x)",
    data_pipeline.run,
    lambda r: data_pipeline.report(r, target=10.0),
  ),
  "sweep": (
    "Sweep packing: runs/hour packed (vmap) vs sequential",
    sweep_packing.run,
    sweep_packing.report,
  ),
  "gpu": ("GPU: GPT ~125M, bf16, seq 1024: step time, tokens/s, MFU", gpu.run, gpu.report),
  "memory": (
    "Memory: model.remat and model.scan_layers (memory, step time, compile time), and setup",
    memory.run,
    memory.report,
  ),
}


def run_section(name, sizes):
  """{date, mode, seconds, result} or, if it raised, {..., error, traceback}."""
  print(f"== {name}", file=sys.stderr, flush=True)
  entry = dict(date=now(), sizes=sizes)
  t = time.perf_counter()
  try:
    entry["result"] = SECTIONS[name][1](**sizes)
  except Exception as err:  # one failing section must not take the others with it
    entry["error"] = f"{type(err).__name__}: {err}"
    entry["traceback"] = traceback.format_exc()
    print(entry["traceback"], file=sys.stderr, flush=True)
  entry["seconds"] = time.perf_counter() - t
  return entry


def section_markdown(i, name, entry):
  title, _, report = SECTIONS[name]
  lines = [
    f"## {i}. {title}",
    "",
    f"_measured {entry['date']}, {entry['mode']}, {entry['seconds']:.0f} s_",
    "",
  ]
  body = None
  if "result" in entry:
    try:
      body = report(entry["result"])
    except Exception as err:  # a result the report cannot read (an older report.json)
      entry = dict(
        entry, error=f"report failed: {type(err).__name__}: {err}", traceback=traceback.format_exc()
      )
  if body is None:
    tail = "\n".join(entry.get("traceback", "").strip().splitlines()[-8:])
    body = f"**Failed**: `{entry.get('error', 'not run')}`\n\n```\n{tail}\n```"
  return "\n".join(lines + [body, ""])


def markdown(report):
  head = [
    "# Benchmarks",
    "",
    f"- date: {report['date']}",
    f"- machine: {report['machine']}",
    f"- command: `{report['command']}`",
    "",
    "Every figure is a ratio against a baseline measured in the same process, with "
    "min (best) and median over repeats; targets are judged on the min (best) "
    "figures, except the optimizer's, judged on the median of ratios of calls made "
    "side by side. Shared machines are noisy: read several runs.",
    "",
  ]
  body = [
    section_markdown(i + 1, name, report["sections"][name])
    for i, name in enumerate(SECTIONS)
    if name in report["sections"]
  ]
  return "\n".join(head + body)


def now():
  return datetime.datetime.now().isoformat(timespec="seconds")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
  parser.add_argument(
    "--only", default="", help=f"comma-separated sections to (re)run: {','.join(SECTIONS)}"
  )
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parser.parse_args(argv)
  only = [s for s in args.only.split(",") if s] or list(SECTIONS)
  unknown = [s for s in only if s not in SECTIONS]
  if unknown:
    parser.error(f"unknown section(s) {','.join(unknown)}; known: {','.join(SECTIONS)}")
  os.chdir(os.path.dirname(HERE))  # the repository root: configs/ and ./data
  mode = "quick" if args.quick else "full"
  json_path, md_path = os.path.join(HERE, "report.json"), os.path.join(HERE, "REPORT.md")
  sections = {}
  if args.only and os.path.exists(json_path):  # keep the sections not rerun
    with open(json_path) as f:
      sections = json.load(f).get("sections", {})
  load = os.getloadavg()
  report = dict(
    date=now(),
    command=" ".join(["python benchmarks/run.py"] + argv),
    machine=f"{machine()}, {os.cpu_count()} CPU cores, load average {load[0]:.2f} at start",
    sections=sections,
  )
  for name in only:
    sections[name] = dict(run_section(name, dict(SIZES[mode][name])), mode=mode)
    # Written after every section, so a killed run keeps what it measured.
    with open(json_path, "w") as f:
      json.dump(report, f, indent=1, default=str)
    with open(md_path, "w") as f:
      f.write(markdown(report))
  print(f"wrote {md_path} and {json_path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
