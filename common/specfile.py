"""Spec files: one parser for YAML, TOML and JSON mappings (training and pipeline specs).

YAML comes from PyYAML, a core dependency, imported here only when a YAML file is read.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError

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
