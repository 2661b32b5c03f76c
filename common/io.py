"""The one atomic writer: a temp file in the same folder, renamed over the target.

A killed process never leaves half a file, and concurrent writers of the same path each
leave a whole one (the last rename wins). Files get the mode open() would give (0644 under the
usual umask), so a team can share an output folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import IO, Any

from taskladder.common.errors import InputError
from taskladder.common.secrets import mask


def atomic_write(path: str | Path, write: Callable[[IO], Any], mode: str = "w") -> Path:
    """Call `write(fh)` on a temp file beside `path`, then rename it into place."""
    path = Path(path)
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: never renamed over
        with open(path, mode) as fh:
            write(fh)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would: mkstemp's 0600 hides it from a team
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@cache
def _umask() -> int:
    current = os.umask(0)  # read once, before any writer thread: umask has no getter
    os.umask(current)
    return current


def write_text(path: str | Path, text: str) -> Path:
    """Atomic text file; credentials in URIs are masked (common.secrets)."""
    text = mask(text)
    return atomic_write(path, lambda fh: fh.write(text))


def write_json(path: str | Path, data: Any, *, indent: int = 2,
               default: Callable[[Any], Any] | None = str, allow_nan: bool = True) -> Path:
    """Atomic JSON (sorted keys, trailing newline). `default` turns odd values into JSON."""
    text = json.dumps(data, indent=indent, sort_keys=True, default=default, allow_nan=allow_nan,
                      ensure_ascii=False)
    return write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def check_writable(path: str | Path, field: str, folder: bool = False) -> None:
    """InputError (naming `field` and the value) unless `path` (a file, or a folder when
    `folder`) can be written: its nearest existing folder is a folder we can create files in.
    Probed with a temporary file, so root, ACLs and read-only mounts answer truly."""
    p = Path(path)
    if not folder and p.exists() and not p.is_file() and not p.is_dir():  # /dev/null
        if not os.access(p, os.W_OK):
            raise InputError(f"{field} {str(path)!r}: cannot write (permission denied)")
        return
    if not folder and p.is_dir():
        raise InputError(f"{field} {str(path)!r}: is a folder, expected a file path")
    if folder and p.exists() and not p.is_dir():
        raise InputError(f"{field} {str(path)!r}: exists and is not a folder")
    base = p if folder else p.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InputError(f"{field} {str(path)!r}: {base} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise InputError(f"{field} {str(path)!r}: cannot write in {base} "
                         f"({exc.strerror or exc})") from None
