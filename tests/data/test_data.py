"""Data sources on the real data sets: determinism, splits, formats, errors."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from adamlab import data, models, optim
from adamlab.data import images, text
from adamlab.errors import ConfigError
from adamlab.train import optimizer


def config(model="gpt", name="gcide", **data_fields):
  c = ml_collections.ConfigDict(dict(
      seed=3, batch_size=8, model=models.default_config(model), optimizer=optimizer.default_config(),
      data=data.default_config()))
  c.data.name = name
  c.data.update(data_fields)
  c.model.seq_len = 64 if model == "gpt" else None
  if model != "gpt":
    del c.model["seq_len"]
  return c


def test_gcide_batches_are_pure_functions_of_seed_and_step():
  src = data.source(config())
  assert len(src.train) > 30_000_000  # ~40 MB of English
  x1, y1 = src.batch(17)
  x2, y2 = data.source(config()).batch(17)
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(x1[:, 1:], y1[:, :-1])  # targets are the next bytes
  assert not np.array_equal(src.batch(18)[0], x1)
  assert x1.shape == (8, 64) and x1.dtype == np.int32
  # A process reading rows 4:8 of the global batch gets exactly those rows.
  np.testing.assert_array_equal(src.batch(17, slice(4, 8))[0], x1[4:])
  text_bytes = bytes(np.asarray(x1[0], np.uint8))
  assert text_bytes.decode("latin-1").isprintable() or b"\n" in text_bytes


@pytest.mark.parametrize("model,name", [("gpt", "gcide"), ("mlp", "fashion_mnist")])
def test_consecutive_batches_are_independent_draws(model, name):
  # Regression: with the step in Philox's lowest counter word, batch t + 1 was batch t
  # shifted by one block (120 of 128 examples shared).
  c = config(model, name)
  c.batch_size = 128
  src = data.source(c)
  seen = [set(map(lambda a: a.tobytes(), src.batch(t)[0])) for t in range(20)]
  pool = len(src.train) if model == "gpt" else len(src.train[0])
  for a, b in zip(seen, seen[1:]):
    assert len(a & b) <= 5 + 3 * 128 * 128 / pool  # what chance gives, with room
  assert len(set().union(*seen)) >= 0.95 * 20 * 128


def test_held_out_split_is_disjoint_end_of_corpus():
  src = data.source(config())
  total = len(src.train) + len(src.eval)
  assert len(src.eval) == total - int(total * 0.95)
  np.testing.assert_array_equal(src.eval_batch(0)[0], src.eval_batch(0)[0])


def test_fashion_mnist_idx_files():
  parts = images.load_fashion_mnist(data.data_dir())
  assert parts["train"][0].shape == (60000, 28, 28, 1) and parts["eval"][0].shape[0] == 10000
  assert set(np.unique(parts["train"][1])) == set(range(10))
  assert abs(float(parts["train"][0].mean())) < 1e-3  # normalised
  src = data.source(config("vit", "fashion_mnist"))
  x, y = src.batch(5)
  assert x.shape == (8, 28, 28, 1) and y.shape == (8,)
  np.testing.assert_array_equal(x, data.source(config("vit", "fashion_mnist")).batch(5)[0])


def test_user_text_npy_bin_and_npz(tmp_path):
  (tmp_path / "a.txt").write_bytes(b"hello world, " * 200)
  src = data.source(config(name="text", path=str(tmp_path / "a.txt")))
  assert bytes(np.asarray(src.batch(0)[0][0][:5], np.uint8)) in b"hello world, " * 2
  np.save(tmp_path / "t.npy", np.arange(5000, dtype=np.uint16) % 256)
  assert data.source(config(name="text", path=str(tmp_path / "t.npy"))).batch(0)[0].shape == (8, 64)
  (np.arange(5000, dtype=np.uint16) % 300).tofile(tmp_path / "t.bin")
  with pytest.raises(ConfigError, match="model.vocab_size"):
    data.source(config(name="text", path=str(tmp_path / "t.bin")))
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8),
           y_train=rng.integers(0, 10, 50), x_test=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
           y_test=rng.integers(0, 10, 20))
  src = data.source(config("mlp", "npz", path=str(tmp_path / "d.npz")))
  assert src.batch(0)[0].shape == (8, 28, 28, 1)


def test_corrupt_or_missing_files_are_config_errors(tmp_path):
  bad = tmp_path / "bad-images-idx3-ubyte.gz"
  bad.write_bytes(gzip.compress(b"\x01\x02garbage"))
  with pytest.raises(ConfigError, match="data.path"):
    images.read_idx(str(bad))
  with pytest.raises(ConfigError, match="data.path"):
    data.source(config(dir=str(tmp_path)))
  with pytest.raises(ConfigError, match="data.name"):
    data.source(config(name="imagenet"))
  (tmp_path / "short.txt").write_bytes(b"abc")
  with pytest.raises(ConfigError, match="seq_len"):
    data.source(config(name="text", path=str(tmp_path / "short.txt"))).batch(0)


def test_fetch_from_a_folder(tmp_path):
  dest = tmp_path / "copy"
  data.fetch(str(dest), source=data.data_dir(), log=lambda *_: None)
  for name, (_, files) in data.fetch.__globals__["PACKAGES"].items():
    for f in files:
      assert os.path.getsize(dest / name / f) == os.path.getsize(os.path.join(data.data_dir(), name, f))
  with pytest.raises(ConfigError, match="--from"):
    data.fetch(str(tmp_path / "other"), source=str(tmp_path / "empty_dir_that_has_nothing"),
               log=lambda *_: None)


def test_train_size_keeps_the_first_examples_and_full_batch_takes_them_all_in_order():
  full = data.source(config("mlp", "fashion_mnist"))
  c = config("mlp", "fashion_mnist", train_size=8, full_batch=True)
  src = data.source(c)
  for step in (0, 5):  # the same whole subset every step
    x, y = src.batch(step)
    np.testing.assert_array_equal(x, full.train[0][:8])
    np.testing.assert_array_equal(y, full.train[1][:8])
  np.testing.assert_array_equal(src.batch(0, slice(2, 4))[1], full.train[1][2:4])
  c.data.full_batch = False  # minibatches drawn from the first 8 only
  drawn = np.concatenate([data.source(c).batch(s)[1] for s in range(20)])
  sub = data.source(c).train[1]
  assert len(sub) == 8 and set(drawn) <= set(sub.tolist())
  np.testing.assert_array_equal(data.source(c).eval_batch(0)[1], full.eval_batch(0)[1])


def test_text_train_size_counts_windows_of_seq_len():
  c = config(train_size=8, full_batch=True)
  src = data.source(c)
  assert len(src.train) == 8 * 64 + 1
  x, y = src.batch(3)
  np.testing.assert_array_equal(x.reshape(-1), src.train[:-1])
  np.testing.assert_array_equal(y.reshape(-1), src.train[1:])
  c.data.full_batch = False  # random windows, each inside the subset
  x, y = data.source(c).batch(0)
  windows = np.lib.stride_tricks.sliding_window_view(src.train, 65)
  for row_x, row_y in zip(x, y):
    start = np.flatnonzero((windows[:, :64] == row_x).all(axis=1))
    assert len(start) and (windows[start[0], 1:] == row_y).all()
  c.data.train_size, c.data.full_batch, c.batch_size = 1, True, 1  # one window is enough
  np.testing.assert_array_equal(data.source(c).batch(0)[0][0], src.train[:64])


@pytest.mark.parametrize("fields,needle", [
    (dict(train_size=-1), "data.train_size"),
    (dict(train_size=7, full_batch=True), "data.full_batch"),  # batch_size is 8
    (dict(train_size=0, full_batch=True), "data.full_batch"),
    (dict(train_size=10 ** 9), "data.train_size"),
])
def test_bad_subsets_are_config_errors(fields, needle):
  for model, name in (("gpt", "gcide"), ("mlp", "fashion_mnist")):
    with pytest.raises(ConfigError, match=needle):
      data.source(config(model, name, **fields))
