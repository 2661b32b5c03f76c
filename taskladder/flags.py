"""The flag glossary: one name per concept across every verb (README's table is this one).

A verb adds a glossary flag through `add(parser, flag, ...)`, which gives it the glossary's
metavar, so `--ladder` is a path of evaluations everywhere and `--json` always takes a path.
Old spellings keep working for one release through `renamed(...)`: hidden from the help,
they store into the new flag's field after a one-line notice on stderr.
"""

from __future__ import annotations

import argparse
import sys

from taskladder.common.errors import deprecated
from taskladder.errors import UsageError

# flag -> (metavar, meaning); a metavar of None is a switch. The order is README's.
GLOSSARY: dict[str, tuple[str | None, str]] = {
    "--ladder": ("PATH", "the ladder's evaluations (folder or file: olmo-csv, lm-eval, table)"),
    "--format": ("FMT", "format of `--ladder` (default: detected)"),
    "--runs": ("GLOBS", "runs of `--ladder` that form the ladder"),
    "--ladder-name": ("NAME", "the ladder's name in the registry"),
    "--actual": ("PATH", "the target's real evaluation(s)"),
    "--actual-format": ("FMT", "format of `--actual`"),
    "--actual-run": ("RUN", "which run of `--actual` is the target"),
    "--target": ("NAME", "the target's name (train: `--target [NAME]`, the spec's target)"),
    "--target-n": ("N", "target parameters (non-embedding)"),
    "--target-d": ("D", "target training tokens"),
    "--target-flops": ("C", "target training compute (D = C / 6N when --target-d is absent)"),
    "--output": ("DIR", "output folder"),
    "--json": ("PATH", "write the JSON result to PATH (`-` = stdout)"),
    "--tracking-uri": ("URI", "the MLflow store"),
    "--tasks": ("LIST", "task names, or `all` (every task with an accuracy) or `paper` (8)"),
    "--metric": ("acc|loss", "gate rule: `acc` (points) or `loss` (relative)"),
    "--tolerance": ("T", "gate rule: allowed error (points, `5%`, or `interval`)"),
    "--max-shift": ("S", "gate rule: how far a re-fit may move a registered prediction"),
    "--patience": ("K", "gate rule: drifting checkpoints in a row before failing"),
    "--schedule": ("SPEC", "the target's schedule: `cosine` over --target-d, or "
                           "`cosine=5T,anneal=3.9T,end=3.95T`"),
    "--stop-on-drift": (None, "stop the watched target's training at a drift verdict (exit 1)"),
    "--devices": ("N", "devices (workers) to run on"),
    "--launcher": ("local|slurm", "`local` (here) or `slurm` (submitit jobs)"),
    "--shards": ("K", "jobs the work is split into"),
    "--slurm": ("KEY=VALUE,...", "what each Slurm job asks for, over the spec's `slurm` "
                "section and by its names (partition=gpu,gpus_per_node=1,timeout_min=240)"),
    "--dry-run": (None, "validate and print the plan, do nothing"),
    "--force": ("STAGE", "run a pipeline stage even when its outputs verify (repeatable)"),
}

# Verbs that say what they do with a glossary flag keep their own help; the metavar is fixed.
FORMATS = ("olmo-csv", "lm-eval", "table")


# A law field set by a flag of another name; the others are `--` + the field with dashes.
FIELD_FLAGS = {"n_bootstrap": "--bootstrap"}


def flag_of(field: str, args: argparse.Namespace) -> str | None:
    """The flag of the verb parsed into `args` that sets law field `field`; None if none does."""
    flag = FIELD_FLAGS.get(field, "--" + field.replace("_", "-"))
    return flag if flag[2:].replace("-", "_") in vars(args) else None


def names(text: str | None) -> list[str] | None:
    """A comma-separated flag value as a list (None when the flag is absent)."""
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def pairs(text: str | None, flag: str) -> dict[str, str]:
    """`NAME=VALUE,...` (--chance, --sizes) as {name: value text}; the laws check the values."""
    out = {}
    for item in names(text) or []:
        name, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"{flag}: {item!r} is not NAME=VALUE")
        if not name.strip():
            raise UsageError(f"{flag}: {item!r} has no name")
        out[name.strip()] = value.strip()
    return out


def over_section(section, text: str | None, flag: str):
    """A spec section (a pydantic model, e.g. a `slurm` section) with `KEY=VALUE,...` from
    `flag` over it, checked as the spec's section is: an unknown key or a bad value is one line
    naming the flag, the key and the value. Free-form mappings (`additional`) stay spec-only."""
    from taskladder.common.specfile import validate

    data = section.model_dump()
    keys = [k for k, v in data.items() if not isinstance(v, dict)]
    values = pairs(text, flag)
    unknown = [k for k in values if k not in keys]
    if unknown:
        raise UsageError(f"{flag}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    return validate(type(section), {**data, **values}, flag)


def add(parser: argparse.ArgumentParser, flag: str, help: str | None = None, **kwargs):
    """Add glossary flag `flag` with its metavar (and the glossary's meaning as default help)."""
    metavar, meaning = GLOSSARY[flag]
    if metavar is None:
        kwargs.setdefault("action", "store_true")
    elif "choices" not in kwargs or flag in ("--format", "--actual-format"):
        kwargs.setdefault("metavar", metavar)
    return parser.add_argument(flag, help=help or meaning, **kwargs)


class _Renamed(argparse.Action):
    """An old spelling: a one-line deprecation notice, then the new flag's field is set."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(option_string, self.new)
        if self.nargs == 0:
            values = self.const
        setattr(namespace, self.dest, values)


def renamed(parser: argparse.ArgumentParser, old: str, new: str, dest: str | None = None,
            switch: bool = False, **kwargs) -> None:
    """Keep `old` working one release as `new` (its field `dest`, default new's name)."""
    dest = dest or new.lstrip("-").replace("-", "_")
    if switch:
        kwargs.update(nargs=0, const=True)
    parser.add_argument(old, dest=dest, new=new, action=_Renamed, help=argparse.SUPPRESS,
                        **kwargs)


def write_json_result(path: str | None, document, **options) -> None:
    """`--json PATH`: the verb's JSON result to PATH (atomically), or to stdout for `-`;
    `options` are `common.io.write_json`'s (indent, default, allow_nan)."""
    if not path:
        return
    if path == "-":
        import json

        options.setdefault("indent", 2)
        print(json.dumps(document, sort_keys=True, ensure_ascii=False, **options))
        return
    from taskladder.common.io import write_json

    write_json(path, document, **options)
    print(f"wrote {path}", file=sys.stderr)


def table_stream(json_path: str | None):
    """Where a verb prints its human table: stderr when the JSON result goes to stdout."""
    return sys.stderr if json_path == "-" else sys.stdout
