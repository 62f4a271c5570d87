"""Bad input: malformed configs, values, meshes, data, grids and arguments each give a
one-line error naming the problem, exit code 2, no traceback, and leave an existing run
directory exactly as it was."""

import hashlib
import pathlib

import pytest

from tests.commands import adamlab
from tests.train.test_trainer import SMALL, train


def snapshot(directory: pathlib.Path) -> dict:
  return {
    str(p.relative_to(directory)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
    for p in directory.rglob("*")
    if p.is_file()
  }


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
  """A real finished run: every bad command below is pointed at it."""
  run = tmp_path_factory.mktemp("runs") / "run"
  r = train(run, "--config.steps=6", "--config.log_every=1")
  assert r.returncode == 0, r.stderr
  return run


# (extra `adamlab train` arguments after SMALL, devices, text the error must contain)
TRAIN = [
  (["--config.optimizer.beta2=0.9"], 1, "optimizer.beta2: no such field"),
  (["--config.model.widht=64"], 1, "model.widht: no such field"),
  (["--config.steps=abc"], 1, "config.steps"),
  (["--config.optimizer.b2=1.0"], 1, "optimizer.b2"),
  (["--config.optimizer.b1=-0.1"], 1, "optimizer.b1"),
  (["--config.optimizer.learning_rate=-1e-3"], 1, "optimizer.learning_rate"),
  (["--config.optimizer.eps=-1.0"], 1, "optimizer.eps"),
  (["--config.optimizer.name=adam"], 1, "optimizer.name"),
  (["--config.optimizer.schedule=cosine"], 1, "optimizer.schedule"),
  (["--config.optimizer.warmup_steps=-1"], 1, "optimizer.warmup_steps"),
  (["--config.model.width=0"], 1, "model.width"),
  (["--config.model.num_heads=3"], 1, "model.width"),
  (["--config.model.seq_len=0"], 1, "model"),
  (["--config.parametrization=mu_p"], 1, "parametrization = 'mu_p'"),
  (["--config.alignment=half"], 1, "alignment"),
  (["--config.batch_size=0"], 1, "batch_size"),
  (["--config.eval_every=0"], 1, "eval_every"),
  (["--config.max_nonfinite=0"], 1, "max_nonfinite"),
  (["--config.ema_decay=1.5"], 1, "ema_decay"),
  (["--config.mesh.data=3"], 1, "mesh"),
  (["--config.mesh.tensor=3"], 8, "mesh"),
  (["--config.mesh.data=16"], 8, "mesh"),
  (["--config.batch_size=7", "--config.mesh.data=2", "--config.mesh.fsdp=4"], 8, "batch_size"),
  (["--config.data.dir=/nonexistent"], 1, "data.path"),
  (["--config.data.train_size=-1"], 1, "data.train_size"),
  (["--config.data.full_batch=True"], 1, "data.full_batch"),
  (["--config.data.name=fashion_mnist"], 1, "data.name"),
  (["--config.data.name=text", "--config.data.path=/nonexistent.txt"], 1, "data.path"),
  (["--config.data.name=text", "--config.data.path=CORRUPT.npy"], 1, "data.path"),
  (["--bogus"], 1, "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("extra,devices,needle", TRAIN)
def test_bad_train_input(tmp_path, existing_run, extra, devices, needle):
  corrupt = tmp_path / "corrupt.npy"
  corrupt.write_bytes(b"\x93NUMPY garbage, not an array")
  extra = [e.replace("CORRUPT.npy", str(corrupt)) for e in extra]
  before = snapshot(existing_run)
  r = adamlab(
    "train", "--workdir", str(existing_run), *SMALL, "--config.steps=6", *extra, devices=devices
  )
  one_line(r, needle)
  assert snapshot(existing_run) == before


def test_a_bad_run_creates_no_directory(tmp_path):
  r = adamlab("train", "--workdir", str(tmp_path / "new"), *SMALL, "--config.optimizer.b2=1.0")
  one_line(r, "optimizer.b2")
  assert not (tmp_path / "new").exists()


OTHER = [
  (["train", "--config", "configs/gpt.py:mu", "--workdir", "RUN"], "config preset = 'mu'"),
  (["train", "--config", "configs/nope.py", "--workdir", "RUN"], "configs/nope.py"),
  (["train", "--config", "SYNTAX.py", "--workdir", "RUN"], "SyntaxError"),
  (["train", "--config", "configs/gpt.py"], "--workdir"),
  (
    ["train", "--config", "configs/vit.py", "--config.model.patch_size=5", "--workdir", "RUN"],
    "model.patch_size",
  ),
  (["train", *SMALL, "--workdir", "FILE"], "a directory (this is a file)"),
  (["frobnicate"], "invalid choice"),
  (["coordcheck", "--config", "configs/gpt.py", "--widths", "a,b"], "--widths"),
  (["coordcheck", "--config", "configs/gpt.py", "--widths", "30"], "model.width = 30"),
  (["coordcheck", "--config", "configs/gpt.py", "--steps", "-1"], "--steps"),
  (["sweep", "--config", "configs/sweeps/mutransfer.py:quick", "--workdir", "RUN"], "--workdir"),
  (
    [
      "sweep",
      "--config",
      "configs/sweeps/mutransfer.py:quick",
      "--workdir",
      "NEW",
      "--workers",
      "0",
    ],
    "--workers",
  ),
  (
    ["sweep", "--config", "configs/sweeps/mutransfer.py:quick", "--workdir", "NEW", "--pack", "0"],
    "--pack",
  ),
  (
    ["sweep", "--config", "configs/sweeps/mutransfer.py", "--workdir", "NEW", "--backend", "dask"],
    "invalid choice",
  ),
  (["sweep", "--config", "SYNTAX.py", "--workdir", "NEW"], "SyntaxError"),
  (["search", "--config", "configs/search/nope.py", "--workdir", "NEW"], "--config"),
  (["results", "RUN"], "SWEEP_DIR"),
  (["plot", "NEW"], "RUN_DIR"),
  (["data", "fetch", "--from", "/nonexistent"], "/nonexistent"),
]


@pytest.mark.parametrize("args,needle", OTHER)
def test_bad_command(tmp_path, existing_run, args, needle):
  (tmp_path / "syntax.py").write_text("def get_config(:\n")
  (tmp_path / "file").write_text("not a directory")
  paths = {
    "RUN": str(existing_run),
    "NEW": str(tmp_path / "new"),
    "SYNTAX.py": str(tmp_path / "syntax.py"),
    "FILE": str(tmp_path / "file"),
  }
  before = snapshot(existing_run)
  one_line(adamlab(*[paths.get(a, a) for a in args]), needle)
  assert snapshot(existing_run) == before
  assert not (tmp_path / "new").exists()


def one_line(r, needle):
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert r.stderr.startswith("adamlab: error: ") and r.stderr.count("\n") == 1, r.stderr
  assert needle in r.stderr, r.stderr
  assert "Traceback" not in r.stderr


def test_there_are_at_least_thirty():
  assert len(TRAIN) + len(OTHER) >= 30
