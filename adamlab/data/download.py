"""`adamlab data fetch`: the real data sets, from Debian packages, without a system install.

`apt-get download` fetches the .deb files (no root needed) and `dpkg -x` unpacks them
into a scratch folder; the files the loaders read are copied into the data directory:

  DATA/gcide/gcide.dict.dz              GCIDE dictionary (dict-gcide), ~40 MB of English
  DATA/fashion-mnist/*-ubyte.gz         Fashion-MNIST IDX files (dataset-fashion-mnist)

`--from PATH` copies the same files from an existing folder instead (a system install
under /usr/share, or a copy made elsewhere).
"""

import glob
import os
import shutil
import subprocess
import tempfile

from adamlab.errors import ConfigError

PACKAGES = {
    "gcide": ("dict-gcide", ["gcide.dict.dz"]),
    "fashion-mnist": ("dataset-fashion-mnist",
                      ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
}


def data_dir(path: str = "") -> str:
  """The data directory: the given path, else $ADAMLAB_DATA, else ./data."""
  return os.path.abspath(path or os.environ.get("ADAMLAB_DATA") or "data")


def present(root: str, name: str) -> bool:
  return all(os.path.isfile(os.path.join(root, name, f)) for f in PACKAGES[name][1])


def fetch(root: str = "", source: str = "", log=print) -> str:
  """Make sure both data sets are in `root`; returns the data directory."""
  root = data_dir(root)
  if source and not os.path.isdir(source):
    raise ConfigError("data fetch --from", source, "an existing folder")
  missing = [name for name in PACKAGES if not present(root, name)]
  if not missing:
    log(f"data: already in {root}")
    return root
  with tempfile.TemporaryDirectory() as scratch:
    search = source or _unpack([PACKAGES[n][0] for n in missing], scratch)
    for name in missing:
      os.makedirs(os.path.join(root, name), exist_ok=True)
      for f in PACKAGES[name][1]:
        found = glob.glob(os.path.join(search, "**", f), recursive=True)
        if not found:
          raise ConfigError("data fetch --from", search, f"a folder containing {f}")
        # Copy, then rename: a reader (or a second fetch running alongside, as in
        # parallel tests) sees the whole file or none of it.
        dest = os.path.join(root, name, f)
        partial = f"{dest}.{os.getpid()}.partial"
        shutil.copyfile(found[0], partial)
        os.replace(partial, dest)
      log(f"data: {name} -> {os.path.join(root, name)}")
  return root


def _unpack(packages, scratch: str) -> str:
  if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
    raise ConfigError("data fetch: apt-get and dpkg are not available here; install "
                      f"{' '.join(packages)} elsewhere and use `adamlab data fetch --from DIR`")
  debs = os.path.join(scratch, "debs")
  os.makedirs(debs)
  r = _run(["apt-get", "download", *packages], debs)
  if r.returncode != 0:
    _run(["apt-get", "update"], debs)  # a machine that never listed its packages
    r = _run(["apt-get", "download", *packages], debs)
  if r.returncode != 0:
    last = (r.stderr.strip().splitlines() or ["no output"])[-1]
    raise ConfigError(f"data fetch: apt-get download {' '.join(packages)} failed ({last}); "
                      "use `adamlab data fetch --from DIR` with a folder holding the files")
  out = os.path.join(scratch, "root")
  for deb in glob.glob(os.path.join(debs, "*.deb")):
    if _run(["dpkg", "-x", deb, out], debs).returncode != 0:
      raise ConfigError(f"data fetch: dpkg -x {os.path.basename(deb)} failed; "
                        "use `adamlab data fetch --from DIR`")
  return out


def _run(cmd, cwd):
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
