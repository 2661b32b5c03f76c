"""The one atomic writer: a temp file in the same folder, renamed over the target.

A killed process never leaves half a file, and concurrent writers of the same path each
leave a whole one (the last rename wins).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO], Any], mode: str = "w") -> Path:
    """Call `write(fh)` on a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def write_json(path: str | Path, data: Any, *, indent: int = 2,
               default: Callable[[Any], Any] | None = str, allow_nan: bool = True) -> Path:
    """Atomic JSON (sorted keys, trailing newline). `default` turns odd values into JSON."""
    text = json.dumps(data, indent=indent, sort_keys=True, default=default, allow_nan=allow_nan,
                      ensure_ascii=False)
    return write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
