"""The README's examples run as written."""

import pathlib
import re

README = pathlib.Path(__file__).parents[1] / "README.md"


def test_python_examples_run(capsys):
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})
  out = capsys.readouterr().out
  assert "'w_hidden': ('hidden', 0.0625)" in out


def test_ci_runs_the_readme_test_command():
  command = "python3 -m pip install -q -e '.[dev]' && adamlab data fetch && python3 -m pytest"
  assert command in README.read_text()
  assert command in (README.parent / ".ci" / "run").read_text()
