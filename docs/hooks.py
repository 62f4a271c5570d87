"""MkDocs hooks: the figures that the experiment READMEs show, and a complete API page.

Each page docs/figures/<figure>/index.md includes experiments/<figure>/README.md, whose
images are relative links such as `quick/transfer.png`. `on_files` adds every committed
PNG under experiments/<figure>/quick/ to the site at figures/<figure>/quick/, so those
links resolve (and are checked by `mkdocs build --strict`) without copying any file
into docs/.

docs/api/optim.md lists the names of `adamlab.optim.__all__` one by one (griffe files
`skip_spikes` and `adam_atan2` under their modules of the same name, so a single
`::: adamlab.optim` would leave them out). `on_page_content` warns, which fails a
strict build, when a name of `__all__` has no entry there.
"""

import ast
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
log = logging.getLogger("mkdocs.hooks.adamlab")


def on_files(files, config):
  for png in sorted(EXPERIMENTS.glob("*/quick/**/*.png")):
    uri = "figures/" + png.relative_to(EXPERIMENTS).as_posix()
    files.append(File.generated(config, uri, abs_src_path=str(png)))
  return files


def _optim_all() -> list:
  """`adamlab.optim.__all__`, read from the source (no JAX import)."""
  tree = ast.parse((ROOT / "adamlab" / "optim" / "__init__.py").read_text())
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
      isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
    ):
      return list(ast.literal_eval(node.value))
  raise ValueError("adamlab/optim/__init__.py has no __all__")


def on_page_content(html, page, config, files):
  if page.file.src_uri == "api/optim.md":
    # adamlab.optim.NAME, or adamlab.optim.NAME.NAME for a name shadowed by its module.
    ids = set(re.findall(r'id="adamlab\.optim\.([\w.]+)"', html))
    for name in _optim_all():
      if name not in ids and f"{name}.{name}" not in ids:
        log.warning("api/optim.md: adamlab.optim.%s (in __all__) is not documented", name)
  return html
