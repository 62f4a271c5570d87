"""Where metrics go: metrics.jsonl (one line per step), TensorBoard, Weights & Biases
(optional), a progress line."""

import json
import math
import os
import sys
import time

import ml_collections

from adamlab.files import write_text

WANDB_MODES = ("off", "online", "offline")
WANDB_ID = "wandb_id.txt"  # in a run directory: its W&B run id, which a resume reuses


def wandb_config() -> ml_collections.ConfigDict:
  """The `wandb` section: Weights & Biases beside TensorBoard (off by default)."""
  return ml_collections.ConfigDict(
    dict(
      mode="off",  # off, online or offline (pip install 'adamlab[wandb]')
      project="",  # "": W&B's default project
      entity="",  # "": the logged-in user's default entity
      group="",  # a sweep sets its directory's name; the run's name is its directory's
    )
  )


class Writer:
  """Appends step metrics to RUN/metrics.jsonl and TensorBoard events in RUN/tb, and logs
  them to W&B when the run's config.json turns it on (`wandb.mode`)."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    _truncate_after(self.path, resume_step)  # steps after the checkpoint are redone
    self.file = open(self.path, "a")
    from tensorboardX import SummaryWriter
    from tensorboardX.proto.summary_pb2 import Summary

    self.summary = Summary
    # purge_step: events of steps after the checkpoint are dropped, as they are redone.
    self.tb = SummaryWriter(
      os.path.join(workdir, "tb"),
      flush_secs=30,
      purge_step=resume_step + 1 if resume_step else None,
    )
    self.wandb = open_wandb(workdir)

  def write(self, step: int, metrics: dict) -> None:
    row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
    self.file.write(json.dumps(row) + "\n")
    # One event holding every scalar of the step, on add_scalar's own path (its file
    # writer): add_scalar writes an event per scalar, a host cost paid every step.
    values = [
      self.summary.Value(tag=k, simple_value=v)
      for k, v in row.items()
      if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)
    ]
    self.tb._get_file_writer().add_summary(self.summary(value=values), step)
    if self.wandb is not None:  # (non-finite values too: W&B records NaN and inf)
      numbers = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
      self.wandb.log({k: v for k, v in numbers.items() if isinstance(v, (int, float))}, step=step)

  def flush(self, durable: bool = False) -> None:
    """Flushed lines survive a killed process; durable ones (fsync) a crashed machine too."""
    self.file.flush()
    if durable:
      os.fsync(self.file.fileno())

  def close(self) -> None:
    if self.file.closed:
      return
    self.flush(durable=True)
    self.file.close()
    self.tb.close()
    if self.wandb is not None:
      self.wandb.finish()


def open_wandb(workdir: str):
  """The W&B run of the run directory's config.json, or None when its wandb.mode is off.

  Its config is the run's; its name the run directory's (a sweep's run id); its id is
  kept in RUN/wandb_id.txt, so a resumed run goes on logging to the same W&B run. W&B's
  own files go to $WANDB_DIR if set, else to RUN/wandb/.
  """
  path = os.path.join(workdir, "config.json")
  config = {}
  if os.path.exists(path):
    with open(path) as f:
      config = json.load(f)
  settings = {**wandb_config().to_dict(), **config.get("wandb", {})}
  if settings["mode"] == "off":
    return None
  import wandb  # only here: W&B is an optional extra

  id_path = os.path.join(workdir, WANDB_ID)
  run_id = None  # a new run: W&B picks its id
  if os.path.exists(id_path):
    with open(id_path) as f:
      run_id = f.read().strip()
  run = wandb.init(
    project=settings["project"] or None,
    entity=settings["entity"] or None,
    group=settings["group"] or None,
    name=os.path.basename(os.path.abspath(workdir)),
    id=run_id,
    resume="allow" if run_id else None,
    mode=settings["mode"],
    config=config,
    dir=None if os.environ.get("WANDB_DIR") else workdir,
    reinit="create_new",
  )  # packed runs: one W&B run each, open at once
  if run_id is None:
    write_text(id_path, run.id + "\n")
  return run


def _plain(v):
  v = v.item() if hasattr(v, "item") else v
  return v if not isinstance(v, float) or math.isfinite(v) else str(v)


def _truncate_after(path: str, step: int) -> None:
  """Keep lines with step <= `step` (all of them for a fresh run with no file)."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError):
        break  # a line cut by a kill: everything after it is redone
  write_text(path, "".join(kept))


def read(path: str):
  """The rows of a metrics.jsonl."""
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        break
  return rows


class Progress:
  """One stderr line: step, loss and ETA, redrawn at each log interval."""

  def __init__(self, total: int, start: int):
    self.total, self.start, self.t0 = total, start, time.time()
    self.tty = sys.stderr.isatty()

  def update(self, step: int, loss: float) -> None:
    done = step - self.start
    rate = done / max(1e-9, time.time() - self.t0)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
    line = f"step {step}/{self.total}  loss {loss:.4f}  {rate:.1f} steps/s  ETA {eta_text}"
    print(
      ("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True
    )

  def close(self) -> None:
    if self.tty:
      print(file=sys.stderr)
