"""Griffe extension: read adamlab's docstrings the way the code writes them.

adamlab's docstrings are Google style with two habits that griffe's Google parser does
not know, so the API reference would show them as plain text:

- `Example:` (singular; `tests/optim/test_surface.py` requires it) is not one of
  griffe's section titles, only `Examples:`. Unknown titles become admonitions, where
  the `>>>` lines read as nested block quotes and `[0, 0]` outputs as links. Renamed
  here to `Examples:`, so the doctests render as code.
- `.. math::` blocks (reStructuredText) become `$$ ... $$` blocks for
  `pymdownx.arithmatex`, rendered by MathJax (`docs/javascripts/mathjax.js`).

A module-level function whose docstring is assigned at run time (`f.__doc__ = ...`,
which griffe's static analysis does not see) gets it from the imported module.

Only the rendered docs change; the source and its doctests are left as they are.
"""

import importlib
import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$")
_MATH = re.compile(r"^(\s*)\.\. math::\s*$")


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _markdown(text: str) -> str:
  lines = text.splitlines()
  out = []
  i = 0
  while i < len(lines):
    line = lines[i]
    if _EXAMPLE.match(line):
      out.append(_EXAMPLE.sub(r"\1Examples:", line))
      i += 1
      continue
    math = _MATH.match(line)
    if not math:
      out.append(line)
      i += 1
      continue
    # The directive's body: the blank or more-indented lines after it.
    indent = math.group(1)
    body = []
    i += 1
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
      body.append(lines[i])
      i += 1
    tex = [l for l in body if l.strip()]
    cut = min(_indent(l) for l in tex) if tex else 0
    # One display block per blank-line-separated equation.
    group = []
    for l in body + [""]:
      if l.strip():
        group.append(indent + l[cut:])
      elif group:
        out += ["", indent + "$$"] + group + [indent + "$$"]
        group = []
    out.append("")
  return "\n".join(out)


def _runtime_docstring(obj: griffe.Object, agent) -> None:
  """Sets a module-level function's docstring from its imported object, if it has one."""
  if obj.docstring is not None or not obj.is_function or not obj.parent.is_module:
    return
  try:
    doc = getattr(importlib.import_module(obj.parent.path), obj.name).__doc__
  except (ImportError, AttributeError):
    return
  if doc:
    obj.docstring = griffe.Docstring(
      doc, parent=obj, parser=agent.docstring_parser, parser_options=agent.docstring_options
    )


class MarkdownDocstrings(griffe.Extension):
  """Rewrites `Example:` and `.. math::` in every docstring before it is parsed."""

  def on_instance(self, *, obj: griffe.Object, agent=None, **kwargs) -> None:
    if agent is not None:
      _runtime_docstring(obj, agent)
    if obj.docstring is not None:
      obj.docstring.value = _markdown(obj.docstring.value)
