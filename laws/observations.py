"""The one tidy table passed between stages: one row per (run, checkpoint, task, metric).

Columns (see README "Observation table"):
  run    str    ladder run id, e.g. "190M-1xC"
  size   str    size label, e.g. "190M"
  N      float  parameters used by the laws (non-embedding, as the source counts them)
  D      float  training tokens seen at this checkpoint
  step   int    optimizer step of the checkpoint
  flops  float  training compute to reach this checkpoint (FLOPs per token x D)
  task   str    task key (mmlu, hellaswag, ...) or "lm" for language-model validation losses
  metric str    bpb, acc, acc_norm, acc_bytes, ce, task_ce, acc_mc; for task "lm": ce_<set>
  value  float  the measured value

Pure numpy; columns are read-only arrays so a table can be shared safely between stages.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from taskladder.common.errors import InputError
from taskladder.common.io import atomic_write

STR_COLUMNS = ("run", "size", "task", "metric")
FLOAT_COLUMNS = ("N", "D", "flops", "value")
COLUMNS = ("run", "size", "N", "D", "step", "flops", "task", "metric", "value")


def _distinct(col: np.ndarray) -> tuple[list, np.ndarray]:
    """(distinct values, index of each row's value among them) of a numeric column; floats by
    their bits, so that -0.0 and 0.0 stay apart."""
    bits = col.view(np.int64) if col.dtype == float else col
    _, first, inverse = np.unique(bits, return_index=True, return_inverse=True)
    return col[first].tolist(), inverse.reshape(-1)


def _frozen(values, dtype) -> np.ndarray:
    return _read_only(np.array(values, dtype=dtype))


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


class ShapeError(InputError):
    """The ladder's shape cannot support a fit for one task (too few sizes, runs or
    checkpoints): that task is unpredictable, the others are still fitted."""


@dataclass(frozen=True, eq=False)
class Observations:
    """Column-oriented observation table; build with `from_records`, query with `where`."""

    run: np.ndarray
    size: np.ndarray
    N: np.ndarray
    D: np.ndarray
    step: np.ndarray
    flops: np.ndarray
    task: np.ndarray
    metric: np.ndarray
    value: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.run)
        for f in fields(self):
            col = getattr(self, f.name)
            if len(col) != n:
                raise InputError(f"observation column {f.name!r} has {len(col)} rows, expected {n}")

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[Mapping], where: str = "observations") -> Observations:
        """Validate rows (dicts with the nine columns); `where` names the source in errors,
        which count rows from 1."""
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        for i, rec in enumerate(records, start=1):
            for c in COLUMNS:
                if c not in rec:
                    raise InputError(f"{where}: row {i}: missing column {c!r}")
            for c in STR_COLUMNS:
                cols[c].append(str(rec[c]))
            for c in FLOAT_COLUMNS:
                v = _as_float(rec[c], c, i, where)
                if c != "value" and v < 0:
                    raise InputError(f"{where}: row {i}: {c} must be >= 0, got {rec[c]!r}")
                cols[c].append(v)
            if cols["N"][-1] <= 0:
                raise InputError(f"{where}: row {i}: N must be > 0, got {rec['N']!r}")
            step = _as_float(rec["step"], "step", i, where)
            if step < 0 or step != int(step):
                raise InputError(
                    f"{where}: row {i}: step must be an integer >= 0, got {rec['step']!r}"
                )
            cols["step"].append(int(step))
        return cls(
            **{c: _frozen(cols[c], object if c in STR_COLUMNS else float) for c in COLUMNS[:4]},
            step=_frozen(cols["step"], np.int64),
            flops=_frozen(cols["flops"], float),
            task=_frozen(cols["task"], object),
            metric=_frozen(cols["metric"], object),
            value=_frozen(cols["value"], float),
        )

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, Iterable], where: str = "observations", line0: int | None = None
    ) -> Observations:
        """Vectorised `from_records` for readers that already hold whole columns; errors name
        `line {i + line0}` when rows come from a file's lines (CSV: line0=2), else row i+1."""

        def at(i) -> str:
            return f"line {i + line0}" if line0 is not None else f"row {i + 1}"

        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise InputError(f"{where}: missing column {missing[0]!r}")
        cols = {c: np.asarray(columns[c], dtype=object) for c in STR_COLUMNS}
        for c in (*FLOAT_COLUMNS, "step"):
            try:
                cols[c] = np.asarray(columns[c], dtype=float)
            except (TypeError, ValueError):
                cols[c] = None
            if cols[c] is None or not np.all(np.isfinite(cols[c])):
                i = _first_bad(columns[c])
                raise InputError(
                    f"{where}: {at(i)}: {c} is not a finite number: {list(columns[c])[i]!r}"
                )
        for c in ("N", "D", "flops", "step"):
            bad = np.flatnonzero(cols[c] < 0)
            if bad.size:
                raise InputError(
                    f"{where}: {at(bad[0])}: {c} must be >= 0, got {float(cols[c][bad[0]]):g}"
                )
        bad = np.flatnonzero((cols["N"] <= 0) | (cols["step"] != np.round(cols["step"])))
        if bad.size:
            i = bad[0]
            col = "N" if cols["N"][i] <= 0 else "step"
            raise InputError(f"{where}: {at(i)}: {col} is invalid: {float(cols[col][i]):g}")
        cols["step"] = cols["step"].astype(np.int64)
        return cls(**{c: _frozen(cols[c], cols[c].dtype) for c in COLUMNS})

    @classmethod
    def concat(cls, tables: Iterable[Observations]) -> Observations:
        tables = list(tables)
        if not tables:
            return cls.from_records([])
        return cls(
            **{
                c: _frozen(
                    np.concatenate([getattr(t, c) for t in tables]), getattr(tables[0], c).dtype
                )
                for c in COLUMNS
            }
        )

    # queries --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.run)

    def mask(self, **equals) -> np.ndarray:
        """Boolean mask of rows whose columns equal the given values (a list/tuple = any of)."""
        m = np.ones(len(self), dtype=bool)
        for col, want in equals.items():
            if col not in COLUMNS:
                raise InputError(f"unknown observation column {col!r}")
            many = isinstance(want, list | tuple | set | frozenset)
            if col in STR_COLUMNS:  # compare small integer codes, not Python strings
                index, codes = self._codes(col)
                wanted = [index[w] for w in (want if many else [want]) if w in index]
                m &= np.isin(codes, wanted)
            elif many:
                m &= np.isin(getattr(self, col), list(want))
            else:
                m &= getattr(self, col) == want
        return m

    def _codes(self, column: str) -> tuple[dict, np.ndarray]:
        """A string column as (value -> code, each row's code), built once per table and
        carried into the tables `where` makes from it."""
        key = f"_codes_{column}"
        if key not in self.__dict__:
            index: dict = {}
            codes = [index.setdefault(v, len(index)) for v in getattr(self, column).tolist()]
            object.__setattr__(self, key, (index, np.array(codes, dtype=np.int64)))
        return self.__dict__[key]

    def where(self, mask: np.ndarray | None = None, **equals) -> Observations:
        m = self.mask(**equals) if mask is None else mask & self.mask(**equals)
        out = Observations(**{c: _read_only(getattr(self, c)[m]) for c in COLUMNS})
        for c in STR_COLUMNS:
            if f"_codes_{c}" in self.__dict__:
                index, codes = self.__dict__[f"_codes_{c}"]
                object.__setattr__(out, f"_codes_{c}", (index, codes[m]))
        if "_text" in self.__dict__:
            lines, rank = self.__dict__["_text"]
            object.__setattr__(out, "_text", (lines[m], rank[m]))
        return out

    def unique(self, column: str) -> list:
        """Distinct values of a column, in first-seen order."""
        return list(dict.fromkeys(getattr(self, column).tolist()))

    def records(self) -> list[dict]:
        out = []
        for i in range(len(self)):
            out.append({c: _py(getattr(self, c)[i]) for c in COLUMNS})
        return out

    def content_hash(self) -> str:
        """sha256 of the rows in a canonical order: the identity of a fit's input data."""
        if not len(self):
            return hashlib.sha256().hexdigest()
        lines, rank = self._row_text()
        text = "\n".join(lines[np.argsort(rank)].tolist()) + "\n"
        return hashlib.sha256(text.encode()).hexdigest()

    def _row_text(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row as text (run, task, metric, step, repr(value), repr(N), repr(D),
        repr(flops), size joined by \\x1f) and its rank in the canonical order (by that text
        tuple, step numerically). Built once per table and carried into the tables `where`
        makes from it: a subset's canonical order is its rows' order by rank."""
        if "_text" not in self.__dict__:
            names = ("run", "task", "metric", "step", "value", "N", "D", "flops", "size")
            texts, keys = [], []
            for i, name in enumerate(names):
                col = getattr(self, name)
                if name in STR_COLUMNS:  # the codes the queries use (a superset of values)
                    index, inverse = self._codes(name)
                    values = list(index)
                else:
                    values, inverse = _distinct(col)  # each distinct value formatted once
                text = [repr(v) if col.dtype == float else str(v) for v in values]
                rank = np.argsort(np.argsort(np.array(text, dtype=str), kind="stable"))
                texts.append(np.array(text, dtype=object)[inverse].tolist())
                keys.append(self.step if i == 3 else rank[inverse])
            lines = np.array(list(map("\x1f".join, zip(*texts, strict=True))), dtype=object)
            rank = np.empty(len(self), dtype=np.int64)
            rank[np.lexsort(keys[::-1])] = np.arange(len(self))
            object.__setattr__(self, "_text", (lines, rank))
        return self.__dict__["_text"]

    def series(self, task: str, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per run (first-seen order): the row indices of one task metric ordered by D, and
        their values in that order. One grouping pass, no per-run queries."""
        sub = self.mask(task=task, metric=metric)
        rows = np.flatnonzero(sub)
        runs = self.run[rows].tolist()
        first = dict.fromkeys(runs)
        group = {r: i for i, r in enumerate(first)}
        g = np.fromiter((group[r] for r in runs), dtype=np.int64, count=len(runs))
        order = np.lexsort((self.D[rows], g))  # by run, then D (stable)
        rows, g = rows[order], g[order]
        bounds = np.searchsorted(g, np.arange(len(first) + 1))
        return {
            r: (rows[bounds[i] : bounds[i + 1]], self.value[rows[bounds[i] : bounds[i + 1]]])
            for i, r in enumerate(first)
        }

    def finals(
        self,
        task: str,
        metric: str,
        window: int = 5,
        stat: Callable[[np.ndarray], float] = np.mean,
        fraction: float = 0.0,
    ) -> Finals:
        """Per run: N, D, flops of its last checkpoint and `stat` (the mean) of the values of
        its last `window` checkpoints by D, or with `fraction` > 0 of the checkpoints in the
        last `fraction` of its tokens (the final one at least). The one definition of a run's
        final value."""
        series = self.series(task, metric)
        last = np.array([idx[-1] for idx, _ in series.values()], dtype=np.int64)
        if fraction > 0:
            ends = [(i, self.D[i] >= (1 - fraction) * self.D[i[-1]]) for i, _ in series.values()]
            y = np.array([float(stat(self.value[i][e])) for i, e in ends])
        else:
            y = np.array([float(stat(v[-window:])) for _, v in series.values()])
        return Finals(tuple(series), self.N[last], self.D[last], self.flops[last], y)

    def checkpoints_per_run(self, task: str, metric: str) -> dict[str, int]:
        return {r: len(idx) for r, (idx, _) in self.series(task, metric).items()}

    # plain CSV of our own schema --------------------------------------------------------------
    def to_csv(self, path: str | Path) -> None:
        def write(fh) -> None:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            for r in self.records():
                w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})

        atomic_write(path, write)


@dataclass(frozen=True)
class Finals:
    """One point per run: final (N, D, flops) and its final value (see `Observations.finals`)."""

    runs: tuple[str, ...]
    N: np.ndarray
    D: np.ndarray
    flops: np.ndarray
    y: np.ndarray

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.runs, self.y.tolist(), strict=True))


def _as_float(raw, col: str, i: int, where: str) -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise InputError(f"{where}: row {i}: {col} is not a number: {raw!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: row {i}: {col} is not finite: {raw!r}")
    return v


def _first_bad(values) -> int:
    for i, raw in enumerate(values):
        try:
            if not math.isfinite(float(raw)):
                return i
        except (TypeError, ValueError):
            return i
    return 0


def _py(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v
