"""Which run of a target's evaluation is the target: answered here, for every verb and stage."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InputError


def target_run(runs: Sequence[str], run: str | None, source: str) -> str:
    """`run` when given (it must be one of `runs`), else the only run; an evaluation holding
    several runs without `run` is ambiguous, and the error names them."""
    shown = ", ".join(runs[:8]) + (", ..." if len(runs) > 8 else "")
    if run is not None:
        if run not in runs:
            raise InputError(f"--actual-run: no run {run!r} in {source} (runs: {shown})")
        return run
    if len(runs) != 1:
        raise InputError(f"--actual: {source} holds {len(runs)} runs ({shown}); pick the target "
                         "with --actual-run")
    return runs[0]
