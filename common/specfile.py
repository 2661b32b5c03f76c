"""Spec files: one way to read, validate and resolve paths in a spec (training and pipeline).

A spec is a YAML, TOML or JSON mapping validated by a pydantic model; its first problem is one
line naming the field and the value; a path in it is resolved by one rule (`resolve_path`).
YAML comes from PyYAML and models from pydantic, both core dependencies, imported only when used.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

M = TypeVar("M")

SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def parse_mapping(text: str, suffix: str, where: str) -> dict[str, Any]:
    """`text` as a mapping in the format its suffix names (YAML otherwise)."""
    import yaml

    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{where}: not valid {suffix.lstrip('.') or 'yaml'}: {first}") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: a spec must be a mapping, got {type(data).__name__}")
    return data


def read_mapping(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return parse_mapping(path.read_text(), path.suffix, str(path))


def validate(model: type[M], data: dict[str, Any], where: str) -> M:
    """`data` as a `model` (a pydantic model); the first problem becomes one InputError line:
    `where: field: what is wrong (got value)`."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        msg = err["msg"].removeprefix("Value error, ")
        field = "" if loc and msg.startswith(f"{loc}.") else f"{loc or 'spec'}: "
        raise InputError(f"{where}: {field}{msg}{shown}") from None


def resolve_path(value: str, base: Path | None) -> Path:
    """A path written in a spec: `~` expanded, `{data}` = the data shipped with the package
    (the paper's ladder), `{shared}` = $TASKLADDER_SHARED or ../shared (the optional large
    corpus); a relative path is relative to `base` (the spec file's folder; None: the working
    directory)."""
    from taskladder.data import PAPER_LADDER_DIR

    shared = os.environ.get("TASKLADDER_SHARED", "../shared")
    value = value.replace("{data}", str(PAPER_LADDER_DIR.parent.parent))
    path = Path(os.path.expanduser(value.replace("{shared}", shared)))
    return (path if path.is_absolute() or base is None else base / path).resolve()
