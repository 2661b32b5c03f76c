"""`taskladder` command line: one verb per stage, bad input reported as one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from taskladder import flags
from taskladder.common.errors import FieldError, InputError, MissingExtraError

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
                     "codes: 0 done, 1 drift (the gate), 2 bad input.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a usage error: scripts that expected the pipeline fail loudly
        parser.print_help(sys.stderr)
        return 2
    try:
        try:
            return int(args.func(args) or 0)
        except ModuleNotFoundError as exc:
            raise missing_extra(args.command, exc) or exc from None
    except InputError as exc:
        flag = flags.flag_of(exc.field, args) if isinstance(exc, FieldError) else None
        print(f"taskladder: error: {exc.named(flag) if flag else exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskladder: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
