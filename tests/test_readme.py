"""The README's library quickstart runs as written, and the README stays a front page."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_library_quickstart_runs():
  text = (ROOT / "README.md").read_text()
  block = text.split("<!-- library-quickstart:start -->")[1].split(
    "<!-- library-quickstart:end -->"
  )[0]
  code = "\n".join(re.findall(r"```python\n(.*?)```", block, re.S))
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)
  # The muP example's table has the roles and learning rates of muP at m = 256 / 64.
  table = namespace["table"]["params"]
  roles = [table[f"Dense_{i}"]["kernel"].role for i in range(3)]
  assert roles == ["input", "hidden", "output"]
  assert table["Dense_1"]["kernel"].lr == 1 / 4
  assert float(namespace["rms"]["w"]) > 0


def test_readme_is_a_front_page():
  text = (ROOT / "README.md").read_text()
  assert len(text.splitlines()) <= 250
  assert not re.search(r"seed 0\d\d|seeds/", text, re.I)  # papers by name, not seed files
  assert text.index("## The library") < text.index("## The trainer")


def test_ci_runs_the_readme_test_command():
  text = (ROOT / "README.md").read_text()
  commands = [
    line for line in text.splitlines() if line.startswith("python3 -m pip install -q -e '.[dev]'")
  ]
  assert len(commands) == 1  # the README's one test command
  assert commands[0] in (ROOT / ".ci" / "run").read_text().splitlines()
  for check in (
    "ruff check",
    "ruff format --check",
    "mypy",
    "mkdocs build --strict",
    "python3 -m pytest",
  ):
    assert check in commands[0]
