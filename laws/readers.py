"""Readers that turn ladder evaluations into the one observation table.

Formats (`read_ladder(path, format=None)` detects the format when it is not given):

``olmo-csv``
    The OLMo-ladder CSVs (one file per run, one row per evaluated checkpoint; a directory or a
    single file). The run is the file stem; its size is the stem's prefix (``190M-1xC`` ->
    ``190M``, ``peteish7_*`` -> ``7B``, ``peteish13_*`` -> ``13B``), N and FLOPs per token
    come from `OLMO_SIZES`, from ``sizes`` (``{NAME: N}``) or from a ``sizes.json``
    beside the CSVs (``{"NAME": N}``); FLOPs per token is 6N where OLMo did not log it.
    D = ``throughput/total_tokens`` (else ``_step * batch_size_in_tokens``);
    flops = FLOPs per token x D. Every ``eval/downstream*`` task is read.
    Metrics: ``*_bpb`` (or ``_bpb_bpb``) -> bpb, ``*_len_norm`` ->
    acc_norm, BoolQ ``*_acc`` -> acc, ``*_mc_5shot_*`` -> acc_mc, ``soft_log`` negated ->
    task_ce, ``eval/<set>-validation/CrossEntropyLoss`` -> task "lm", metric ``ce_<set>``.
    The test split is used where a task has one (MMLU, ARC, OpenBookQA), else validation.
    MMLU = the four subject groups weighted by `MMLU_WEIGHTS`.

``lm-eval``
    A directory tree of lm-eval ``results_*.json`` files (or one such file) from the
    ``ladder_*`` tasks: ``ladder_<task>_rc`` (acc, acc_norm, acc_bytes, bpb, ce, task_ce),
    ``ladder_<task>_mc`` (its acc -> acc_mc), MMLU as ``ladder_mmlu_rc`` or its four groups
    ``ladder_mmlu_<group>_rc``; any other task under its own name (acc, acc_norm). Values are
    read at ``results[task]["<metric>,none"]``; other metrics are ignored. The number of
    questions (``n-samples``) becomes metric ``n_questions``, a fixed choice list in the
    task's config metric ``chance`` (1 / options), and lm-eval's standard error of an rc
    metric (``<metric>_stderr,none``) metric ``<metric>_stderr``. Run metadata (`LadderMeta`)
    comes from the top-level key ``taskladder`` of the results file, else from
    ``ladder_meta.json`` in the model directory named by ``pretrained=``.

``table``
    Our own plain schema, for ladders from anywhere: a CSV whose header is exactly the nine
    observation columns ``run,size,N,D,step,flops,task,metric,value`` (any order), or a JSON
    file holding a list of such records or ``{"observations": [records]}``.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from taskladder.common.errors import FieldError, InputError
from taskladder.common.facts import MMLU_WEIGHTS, OLMO_SIZES, SPLITS, mmlu_mean, train_flops
from taskladder.common.meta import META_FILE, RESULTS_KEY, LadderMeta

from .observations import COLUMNS, Observations
from .table_checks import check_values

FORMATS = ("olmo-csv", "lm-eval", "table")

_TEST_SPLIT = {task for task, split in SPLITS.items() if split == "test"}
_RC_METRICS = ("acc", "acc_norm", "acc_bytes", "bpb", "ce", "task_ce")


def read_ladder(
    path: str | Path,
    format: str | None = None,
    sizes: dict[str, float] | None = None,
    runs: Sequence[str] | None = None,
) -> Observations:
    """Read ladder evaluations at `path` (file or directory) into an observation table;
    `sizes` names N for OLMo-ladder sizes the facts do not know; `runs` (glob patterns) keeps
    the matching runs only, and an OLMo-ladder folder parses only their files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"ladder path {str(path)!r} does not exist")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise FieldError("format", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    _check_regular(path)
    if fmt == "olmo-csv":
        obs = _read_olmo_csv(path, sizes_of(sizes), runs)
    else:
        obs = (_read_lm_eval if fmt == "lm-eval" else _read_table)(path)
    if len(obs) == 0:
        raise InputError(f"{path}: no observations found (format {fmt})")
    if fmt != "table":  # the table reader checks with line numbers
        check_values(obs, str(path))
    return obs if runs is None else select_runs(obs, runs)


def _check_regular(path: Path) -> None:
    """A device or pipe (/dev/zero) would be read forever: only files and folders are read."""
    if not path.is_dir() and not path.is_file():
        raise InputError(f"{path}: not a regular file or folder")


def detect_format(path: Path) -> str:
    """Guess the format from file names and the first line of a file."""
    _check_regular(path)
    if path.is_dir():
        if any(path.rglob("results_*.json")):
            return "lm-eval"
        csvs = sorted(path.glob("*.csv"))
        if not csvs:
            raise InputError(f"{path}: no *.csv or results_*.json files to read")
        return detect_format(csvs[0])
    if path.suffix == ".json":
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        return "lm-eval" if isinstance(data, dict) and "results" in data else "table"
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's BOM
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if set(header) >= {"run", "task", "metric", "value"}:
        return "table"
    if any(h.startswith("eval/") for h in header):
        return "olmo-csv"
    raise InputError(f"{path}: cannot tell the format from its header (give its format)")


def sizes_of(given: Mapping[str, float | str] | None, field: str = "sizes") -> dict[str, float]:
    """{size: N} from numbers or their text (``1.2e9`` or ``1.2B``); N a positive count.
    Errors name `field`."""

    def count(name: str, raw) -> float:
        text = str(raw).strip().upper()
        scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(text[-1:], 1.0)
        try:
            n = float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            raise FieldError(field, f"{name}={raw!r} is not a number") from None
        if not math.isfinite(n) or n < 1:
            raise FieldError(field, f"{name}={raw!r} must be a positive parameter count")
        return n

    if given is not None and not isinstance(given, Mapping):
        raise FieldError(field, f"expected NAME: N pairs, got {given!r}")
    return {str(name): count(str(name), raw) for name, raw in (given or {}).items()}


def select_runs(obs: Observations, patterns: Sequence[str] | str) -> Observations:
    """Rows whose run matches any of the glob `patterns` (field ``runs``)."""
    return obs.where(run=matching_runs(obs.unique("run"), patterns))


def matching_runs(names: Iterable[str], patterns: Sequence[str] | str) -> list[str]:
    """The `names` matching any glob pattern; none matching is an error naming ``runs``."""
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    out = [r for r in names if any(fnmatch.fnmatchcase(r, p) for p in patterns)]
    if not out:
        raise FieldError("runs", f"no run matches {','.join(patterns)!r}")
    return out


# OLMo-ladder CSV -----------------------------------------------------------------------------
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?[MB])(?:-|$)")
_PETEISH_RE = re.compile(r"^peteish(\d+)(?:_|$)")
_DOWNSTREAM_RE = re.compile(
    r"^eval/downstream(?:_bpb|_soft_log)?/(?P<task>[a-z_]+?)_(?P<split>val|test)_(?P<fmt>rc|mc)_5shot_"
    r"(?P<kind>bpb_bpb|bpb|len_norm|acc|soft_log)$"
)
_LM_RE = re.compile(r"^eval/(?P<set>[^/]+)-validation/CrossEntropyLoss$")


def _olmo_size(stem: str, where: str, sizes: dict[str, tuple]) -> str:
    m = _PETEISH_RE.match(stem) or _SIZE_RE.match(stem)
    name = (f"{m.group(1)}B" if m.re is _PETEISH_RE else m.group(1)) if m else stem.split("-")[0]
    if name not in sizes:
        raise FieldError(
            "sizes",
            f"unknown model size {name!r} of {where}: give its N as {name}=N "
            "(or a sizes.json beside the CSVs)",
        )
    return name


def _known_sizes(folder: Path, given: dict[str, float]) -> dict[str, tuple]:
    """size -> (N, FLOPs per token or None): the facts, then sizes.json, then --sizes."""
    out: dict[str, tuple] = dict(OLMO_SIZES)
    path = folder / "sizes.json"
    if path.is_file():
        out.update({k: (v, None) for k, v in sizes_of(_load_json(path), str(path)).items()})
    out.update({k: (v, None) for k, v in given.items()})
    return out


def _olmo_metric(fmt: str, kind: str) -> str:
    if fmt == "mc":
        return "acc_mc"
    return {
        "bpb": "bpb",
        "bpb_bpb": "bpb",
        "len_norm": "acc_norm",
        "acc": "acc",
        "soft_log": "task_ce",
    }[kind]


def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's BOM
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from None
    if not rows or not rows[0]:
        raise InputError(f"{path}: empty file (no header)")
    header, body = rows[0], rows[1:]
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise InputError(
                f"{path}: line {i + 2}: expected {len(header)} fields, got {len(row)} "
                "(truncated or malformed row)"
            )
    return header, body


def _number(raw: str, path: Path, line: int | None, col: str) -> float:
    at = f"{path}: line {line}" if line else str(path)  # None: a JSON file, no line to name
    try:
        v = float(raw)
    except ValueError:
        raise InputError(f"{at}: column {col!r} is not a number: {raw!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{at}: column {col!r} is not finite: {raw!r}")
    return v


def _read_olmo_csv(path: Path, given: dict[str, float], runs) -> Observations:
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path}: no *.csv files")
    if runs is not None:  # one file per run: parse only the selected ones
        keep = set(matching_runs([f.stem for f in files], runs))
        files = [f for f in files if f.stem in keep]
    sizes = _known_sizes(path if path.is_dir() else path.parent, given)
    return Observations.concat(_read_olmo_file(f, sizes) for f in files)


def _olmo_columns(header: list[str]) -> dict[tuple[str, str], dict[str, int]]:
    """(task key, metric) -> {"" or MMLU group: column index}, on the task's preferred split."""
    found: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for j, name in enumerate(header):
        m = _DOWNSTREAM_RE.match(name)
        if m:
            task, part = m.group("task"), ""
            metric = _olmo_metric(m.group("fmt"), m.group("kind"))
            if task.startswith("mmlu_"):
                task, part = "mmlu", task[len("mmlu_") :]
            if task != "boolq" or metric != "acc_norm":
                found.setdefault((task, metric), {}).setdefault(m.group("split"), {})[part] = j
        elif m := _LM_RE.match(name):
            found[("lm", f"ce_{m.group('set')}")] = {"val": {"": j}}
    out = {}
    for (task, metric), splits in found.items():
        complete = {
            s: p for s, p in splits.items() if task != "mmlu" or set(p) == set(MMLU_WEIGHTS)
        }
        order = ("test", "val") if task in _TEST_SPLIT else ("val", "test")
        for split in order:
            if split in complete:
                out[(task, metric)] = complete[split]
                break
    return out


def _column(body: list[list[str]], j: int, path: Path, name: str) -> np.ndarray:
    """Column `j` as finite floats; the first bad cell is an error naming its line."""
    try:
        col = np.array([row[j] for row in body], dtype=float)
    except ValueError:
        col = None
    if col is None or not np.all(np.isfinite(col)):
        for i, row in enumerate(body):
            _number(row[j], path, i + 2, name)
    return col


def _read_olmo_file(path: Path, sizes: dict[str, tuple]) -> Observations:
    header, body = _read_csv_rows(path)
    where = str(path)
    size = _olmo_size(path.stem, where, sizes)
    n_params, flops_per_token = sizes[size]
    flops_per_token = flops_per_token or train_flops(n_params, 1.0)
    col = {name: j for j, name in enumerate(header)}
    if "throughput/total_tokens" not in col and not {"_step", "batch_size_in_tokens"} <= set(col):
        raise InputError(
            f"{path}: missing column 'throughput/total_tokens' "
            "(or '_step' and 'batch_size_in_tokens')"
        )
    metrics = _olmo_columns(header)
    if not any(t != "lm" for t, _ in metrics):
        raise InputError(f"{path}: no downstream task columns (eval/downstream*/...)")

    def column(name: str) -> np.ndarray:
        return _column(body, col[name], path, name)

    if "throughput/total_tokens" in col:
        d = column("throughput/total_tokens")
    if "_step" in col:
        step = column("_step")
        if "throughput/total_tokens" not in col:
            d = step * column("batch_size_in_tokens")
    else:
        batch = column("batch_size_in_tokens") if "batch_size_in_tokens" in col else 0 * d
        step = np.where(batch > 0, np.round(d / np.where(batch > 0, batch, 1)), 0)
    bad = np.flatnonzero((d < 0) | (step < 0) | (step != np.round(step)))
    if bad.size:
        i = bad[0]
        raise InputError(
            f"{path}: line {i + 2}: tokens/step must be non-negative integers, "
            f"got D={float(d[i]):g}, step={float(step[i]):g}"
        )
    keys = list(metrics)
    values = np.empty((len(body), len(keys)))
    for k, (task, metric) in enumerate(keys):
        parts = {p: _column(body, j, path, header[j]) for p, j in metrics[(task, metric)].items()}
        v = mmlu_mean(parts) if task == "mmlu" else parts[""]
        values[:, k] = -v if metric == "task_ce" else v
        bad = np.flatnonzero(values[:, k] < 0)
        if bad.size:
            raise InputError(
                f"{path}: line {bad[0] + 2}: {task} {metric} must be >= 0, "
                f"got {float(values[bad[0], k]):g}"
            )
    n_keys = len(keys)  # rows in checkpoint order, each checkpoint's metrics together
    return Observations.from_columns(
        {
            "run": np.full(values.size, path.stem, dtype=object),
            "size": np.full(values.size, size, dtype=object),
            "N": np.full(values.size, float(n_params)),
            "D": np.repeat(d, n_keys),
            "step": np.repeat(step, n_keys),
            "flops": np.repeat(flops_per_token * d, n_keys),
            "task": np.array([t for t, _ in keys] * len(body), dtype=object),
            "metric": np.array([m for _, m in keys] * len(body), dtype=object),
            "value": values.ravel(),
        },
        where=where,
    )


# lm-eval results -----------------------------------------------------------------------------
_LADDER_TASK_RE = re.compile(r"^ladder_(?P<key>[a-z_]+?)_(?P<fmt>rc|mc)$")


def _read_lm_eval(path: Path) -> Observations:
    files = sorted(path.rglob("results_*.json")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path}: no results_*.json files")
    rows: dict[tuple, dict] = {}
    for f in files:  # sorted by name: lm-eval's timestamped names make later files win
        for rec in _lm_eval_file(f):
            rows[(rec["run"], rec["step"], rec["task"], rec["metric"])] = rec
    return Observations.from_records(list(rows.values()), where=str(path))


def _load_json(path: Path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno} (truncated?)"
        ) from None


def _pretrained_dir(data: dict, path: Path) -> Path | None:
    args = (data.get("config") or {}).get("model_args")
    if isinstance(args, dict):
        pretrained = args.get("pretrained")
    elif isinstance(args, str):
        kv = dict(p.split("=", 1) for p in args.split(",") if "=" in p)
        pretrained = kv.get("pretrained")
    else:
        pretrained = None
    if not pretrained:
        return None
    p = Path(pretrained)
    return p if p.is_absolute() or p.exists() else path.parent / p


def model_dirs(path: Path) -> dict[str, Path]:
    """{run: a model directory it was evaluated from} of an lm-eval results file or tree,
    read from each file's `pretrained=` (runs evaluated from elsewhere are left out)."""
    found = {}
    for f in sorted(path.rglob("results_*.json")) if path.is_dir() else [path]:
        data = _load_json(f)
        model_dir = _pretrained_dir(data, f) if isinstance(data, dict) else None
        if model_dir is not None and isinstance(data.get("results"), dict):
            found[_run_meta(data, f).run] = model_dir
    return found


def _run_meta(data: dict, path: Path) -> LadderMeta:
    meta = data.get(RESULTS_KEY)
    if meta is None:
        model_dir = _pretrained_dir(data, path)
        if model_dir is None:
            raise InputError(
                f"{path}: no run metadata: neither a top-level {RESULTS_KEY!r} key "
                "nor 'pretrained=' in config.model_args"
            )
        if not (model_dir / META_FILE).is_file():
            raise InputError(
                f"{path}: no run metadata: no {RESULTS_KEY!r} key and "
                f"{model_dir / META_FILE} does not exist"
            )
        return LadderMeta.read(model_dir)
    if not isinstance(meta, dict):
        raise InputError(f"{path}: key {RESULTS_KEY!r}: run metadata must be an object")
    try:
        return LadderMeta.from_dict(meta, where=f"{path}: key {RESULTS_KEY!r}")
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: key {RESULTS_KEY!r}: N, D and step must be numbers") from None


def _task_key(name: str) -> tuple[str, str]:
    """(task key, rc | mc) of an lm-eval task name."""
    m = _LADDER_TASK_RE.match(name)
    return (m.group("key"), m.group("fmt")) if m else (name, "rc")


def _lm_eval_file(path: Path) -> list[dict]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise InputError(f"{path}: not an lm-eval results file (no 'results' object)")
    meta = _run_meta(data, path)
    values: dict[tuple[str, str], float] = {}
    for name, res in data["results"].items():
        if not isinstance(res, dict):
            continue
        key, fmt = _task_key(name)
        for metric in _RC_METRICS if fmt == "rc" else ("acc",):
            raw = res.get(f"{metric},none")
            if raw is None:
                continue
            where = f"results.{name}.{metric},none"
            ok = isinstance(raw, int | float | str)
            v = _number(raw, path, None, where) if ok else math.nan
            if not math.isfinite(v) or v < 0:
                raise InputError(f"{path}: {where} must be a finite number >= 0, got {raw!r}")
            values[(key, metric if fmt == "rc" else "acc_mc")] = v
            se = res.get(f"{metric}_stderr,none")
            if fmt == "rc" and isinstance(se, int | float) and math.isfinite(se) and se >= 0:
                values[(key, f"{metric}_stderr")] = float(se)
        if fmt == "rc":
            values.update(_task_facts(data, name, key))
    for metric in {m for _, m in values if not m.endswith("_stderr")}:
        groups = [values.get((f"mmlu_{g}", metric)) for g in MMLU_WEIGHTS]
        if ("mmlu", metric) not in values and all(g is not None for g in groups):
            values[("mmlu", metric)] = mmlu_mean(dict(zip(MMLU_WEIGHTS, groups, strict=True)))
    for name, v in meta.lm_losses.items():
        values[("lm", name)] = v
    base = {
        "run": meta.run,
        "size": meta.size,
        "N": meta.N,
        "D": meta.D,
        "step": meta.step,
        "flops": meta.flops,
    }
    return [dict(base, task=t, metric=m, value=v) for (t, m), v in values.items()]


def _task_facts(data: dict, name: str, key: str) -> dict[tuple[str, str], float]:
    """Number of questions and chance level of a task where the results file says them."""
    out = {}
    n = ((data.get("n-samples") or {}).get(name) or {}).get("effective")
    if isinstance(n, int) and n > 0:
        out[(key, "n_questions")] = float(n)
    choices = ((data.get("configs") or {}).get(name) or {}).get("doc_to_choice")
    if isinstance(choices, list) and len(choices) >= 2:
        out[(key, "chance")] = 1.0 / len(choices)
    return out


# our table ---------------------------------------------------------------------------------
def _read_table(path: Path) -> Observations:
    if path.is_dir():
        raise InputError(f"{path}: the table format is one .csv or .json file, not a directory")
    if path.suffix == ".json":
        data = _load_json(path)
        recs = data.get("observations") if isinstance(data, dict) else data
        if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
            raise InputError(
                f"{path}: expected a list of observation records or {{'observations': [...]}}"
            )
        obs = Observations.from_records(recs, where=str(path))
        check_values(obs, str(path))
        return obs
    header, body = _read_csv_rows(path)
    extra = sorted(set(header) - set(COLUMNS))
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    if extra:
        raise InputError(
            f"{path}: unexpected column {extra[0]!r} (the table has exactly {','.join(COLUMNS)})"
        )
    cols = {c: [row[j] for row in body] for j, c in enumerate(header)}
    obs = Observations.from_columns(cols, where=str(path), line0=2)
    check_values(obs, str(path), line0=2)
    return obs


def final_values(obs: Observations, task: str, metric: str, window: int = 5) -> dict[str, float]:
    """Per run: the mean of the last `window` checkpoints (by D) of one task metric."""
    return obs.finals(task, metric, window).as_dict()
