"""`taskladder` command line: one verb per stage, bad input reported as one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from taskladder import flags
from taskladder.common.errors import (
    DriftStop,
    FieldError,
    InputError,
    Interrupted,
    MissingExtraError,
    raise_interrupted,
)
from taskladder.common.io import check_writable
from taskladder.common.secrets import masked_output

# Each module adds its verbs with `add_parsers(subparsers)`; a verb's handler is stored as
# `func` and receives the parsed namespace. Modules keep heavy imports inside handlers so
# that `taskladder --help` stays fast.
COMMAND_MODULES = (
    "taskladder.cmd_laws",  # fit, predict
    "taskladder.cmd_analyze",  # analyze (the paper's variants)
    "taskladder.cmd_eval",  # eval
    "taskladder.cmd_train",  # train
    "taskladder.cmd_registry",  # register, check-target, gate, ...
    "taskladder.cmd_run",  # run
    "taskladder.cmd_ui",  # ui
)


# A verb that imports an engine the core install lacks names the extra that brings it.
ENGINE_EXTRAS = {"olmo_core": "train", "lm_eval": "eval", "hf_olmo": "eval", "vllm": "vllm"}
SHARED_ENGINES = ("torch", "transformers", "tokenizers", "datasets", "accelerate")
VERB_EXTRAS = {"train": "train", "eval": "eval", "lm-eval": "eval"}  # others: all


def missing_extra(verb: str, exc: ModuleNotFoundError) -> MissingExtraError | None:
    """The MissingExtraError for an engine that is not installed; None for any other module."""
    root = (exc.name or "").split(".")[0]
    if root in ENGINE_EXTRAS:
        extra = ENGINE_EXTRAS[root]
    elif root in SHARED_ENGINES:
        extra = VERB_EXTRAS.get(verb, "all")
    else:
        return None
    return MissingExtraError(extra, f"taskladder {verb}", root)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        print(f"taskladder: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taskladder", description=__doc__,
                     epilog="Start with `taskladder run` (the embedded cpu-micro default) or "
                     "`taskladder run paper-import`. Flags follow one glossary (README); exit "
                     "codes: 0 done, 1 drift (the gate, nothing else), 2 any other failure, "
                     "130/143 interrupted (SIGINT/SIGTERM).")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


DRIFT_VERBS = ("gate", "run")  # the verbs whose exit 1 is the gate's drift verdict
# Flags naming something a verb writes: checked writable before any work (field, attr, folder).
_WRITTEN = (("--json", "json", False), ("--plots", "plots", True), ("--output", "output", True))


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 the gate's drift verdict (nothing else), 2 any other failure
    (one line, no traceback; TASKLADDER_DEBUG=1 re-raises), 130/143 interrupted by
    SIGINT/SIGTERM. Credentials in URIs are masked in everything printed."""
    with masked_output(), _signals():
        try:
            return _main(argv)
        except Interrupted as exc:
            again = shlex.join(["taskladder", *(sys.argv[1:] if argv is None else argv)])
            print(f"taskladder: interrupted ({exc}); finished work and the last checkpoint are "
                  f"kept: run the same command again to resume: {again}", file=sys.stderr)
            return 128 + exc.signum


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a usage error: scripts that expected the pipeline fail loudly
        parser.print_help(sys.stderr)
        return 2
    try:
        try:
            # the one writability rule, for every verb: missing folders are created, an
            # unwritable or wrong-kind path is refused here, before any work
            for flag, attr, folder in _WRITTEN:
                value = getattr(args, attr, None)
                if isinstance(value, str | Path) and str(value) != "-":
                    check_writable(value, flag, folder=folder)
            rc = int(args.func(args) or 0)
        except ModuleNotFoundError as exc:
            raise missing_extra(args.command, exc) or exc from None
    except InputError as exc:
        flag = flags.flag_of(exc.field, args) if isinstance(exc, FieldError) else None
        return _fail(str(exc.named(flag) if flag else exc))
    except DriftStop as exc:  # a watched target stopped on drift: the gate's verdict
        print(f"taskladder: drift: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Python's own SIGINT exception, where a library set it
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted(signal.SIGINT) from exc
    except OSError as exc:  # a file or folder the verb reads or writes
        what = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{what}{exc.strerror or exc}", exc)
    except SystemExit as exc:  # a library exiting: only the gate's verdict may be 1
        if exc.code in (0, None, 2):
            raise
        return _fail(f"{args.command} stopped (exit {exc.code})", exc)
    except Exception as exc:  # a failure nobody named: still one line and exit 2, never 1
        return _fail(f"{args.command} failed: {type(exc).__name__}: {exc}", exc)
    if rc == 1 and args.command not in DRIFT_VERBS:
        return 2
    return rc


def _fail(message: str, exc: BaseException | None = None) -> int:
    if exc is not None and os.environ.get("TASKLADDER_DEBUG") == "1":
        raise exc
    first = message.strip().splitlines()[0] if message.strip() else message
    print(f"taskladder: error: {first}", file=sys.stderr)
    return 2


@contextmanager
def _signals():
    """SIGINT and SIGTERM raise `Interrupted` in the main thread (libraries that install their
    own handlers, like olmo-core's Trainer, are told to do the same: training.run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
