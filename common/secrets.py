"""Credentials stay in the process: a URI's password is masked in every line printed and every
file written (`http://alice:S3CRET@host` -> `http://alice:***@host`)."""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<secret>[^/\s@]+)@")


def mask(text: str) -> str:
    """`text` with the password of every `scheme://user:password@` replaced by `***`."""
    return _USERINFO.sub(lambda m: f"{m['head']}:***@", text)


class _Masked:
    """A text stream that masks credentials in what is written to it."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextmanager
def masked_output():
    """stdout and stderr mask credentials while the block runs."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Masked(saved[0]), _Masked(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
