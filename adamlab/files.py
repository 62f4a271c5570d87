"""Files written whole or not at all: a killed process never leaves half a file."""

import json
import os


def write_text(path: str, text: str) -> None:
  tmp = f"{path}.{os.getpid()}.tmp"  # per process: two writers never share a temp file
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  write_text(path, json.dumps(obj, indent=1))
