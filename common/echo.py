"""The one progress printer of long work (training, submission): a line to stderr, flushed,
so stdout stays for results. Functions take it as `echo=` and callers may pass their own."""

from __future__ import annotations

import sys
from collections.abc import Callable

Echo = Callable[[str], object]


def echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def quiet(line: str) -> None:
    """An echo that prints nothing (other ranks, benchmarks)."""
