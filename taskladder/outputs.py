"""The typed outputs of `taskladder run`'s stages, and how each verifies it still exists.

Each is frozen and JSON round-trips (the state file holds them); `missing(ctx)` checks the
files on disk and, for what lives in the registry, queries the tracking store, so a deleted
mlflow.db makes registration and the fits run again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from taskladder.common.io import read_json
from taskladder.common.meta import META_FILE, Checkpoint


def _first_absent(paths) -> str | None:
    return next((str(p) for p in paths if not Path(p).exists()), None)


def file_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class _Json:
    """JSON round trip of a flat output; outputs with nested or tuple fields override
    `from_dict`."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)


@dataclass(frozen=True)
class Trained(_Json):
    """A trained ladder (or target): its checkpoints and the data they were trained on."""

    folder: str
    models: tuple[Checkpoint, ...]
    tokenizer: str
    corpus_hash: str

    @classmethod
    def from_dict(cls, d: dict) -> Trained:
        return cls(d["folder"], tuple(Checkpoint.from_dict(m) for m in d["models"]), d["tokenizer"],
                   d["corpus_hash"])

    def missing(self, ctx) -> str | None:
        return _first_absent(Path(m.hf_dir) / META_FILE for m in self.models)

    def summary(self) -> str:
        runs = {m.meta.run for m in self.models}
        return f"{len(runs)} runs, {len(self.models)} exported checkpoints"


@dataclass(frozen=True)
class Scored(_Json):
    """lm-eval results, one JSON per scored model, in the same order as the models."""

    folder: str
    results: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: dict) -> Scored:
        return cls(d["folder"], tuple(d["results"]))

    def missing(self, ctx) -> str | None:
        return _first_absent(self.results)

    def summary(self) -> str:
        return f"{len(self.results)} checkpoints scored"


@dataclass(frozen=True)
class Observed(_Json):
    """The one observation table (CSV) and its content hash; `obs` is kept in memory when the
    stage ran in this process, else read back from the table on first use."""

    table: str
    data_hash: str
    file_sha: str
    runs: int
    rows: int
    obs: object = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "obs"}

    def missing(self, ctx) -> str | None:
        path = Path(self.table)
        if not path.is_file():
            return str(path)
        return None if file_sha(path) == self.file_sha else f"{path} changed since it was written"

    def observations(self):
        if self.obs is None:
            from taskladder.laws.readers import read_ladder

            object.__setattr__(self, "obs", read_ladder(self.table, "table"))
        return self.obs

    def summary(self) -> str:
        return f"{self.rows} observations from {self.runs} runs"


def _registry_missing(store, runs: dict[str, str], versions: dict[str, str]) -> str | None:
    """The first MLflow run (by id) or model version (models:/name/version) not in `store`."""
    from mlflow.exceptions import MlflowException

    for what, run_id in runs.items():
        try:
            run = store.call("get_run", run_id)
        except MlflowException:
            return f"run {what} ({run_id}) not in {store.uri}"
        if run.info.lifecycle_stage != "active":
            return f"run {what} ({run_id}) deleted from {store.uri}"
    for uri in versions.values():
        name, version = uri.removeprefix("models:/").rsplit("/", 1)
        try:
            store.call("get_model_version", name, version)
        except MlflowException:
            return f"law {uri} not in {store.uri}"
    return None


@dataclass(frozen=True)
class Registered(_Json):
    """The ladder's runs in the tracking store (one MLflow run per ladder run)."""

    runs: dict[str, str]  # ladder run -> MLflow run id

    def missing(self, ctx) -> str | None:
        return _registry_missing(ctx.store, self.runs, {})

    def summary(self) -> str:
        return f"{len(self.runs)} ladder runs in the tracking store"


@dataclass(frozen=True)
class Predicted(_Json):
    """Fitted laws (registered versions), the target's prediction report and its plots."""

    report: str  # predictions.json
    fits: str  # fits.json
    laws: dict[str, str]  # task -> models:/taskladder-law-<task>/<version>
    predictions: dict[str, str]  # task -> MLflow run id of the registered prediction
    plots: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: dict) -> Predicted:
        return cls(d["report"], d["fits"], dict(d["laws"]), dict(d["predictions"]),
                   tuple(d["plots"]))

    def missing(self, ctx) -> str | None:
        absent = _first_absent([self.report, self.fits, *self.plots])
        if absent:
            return absent
        runs = {f"prediction of {t}": r for t, r in self.predictions.items()}
        return _registry_missing(ctx.store, runs, self.laws)

    def document(self) -> dict:
        return read_json(self.report)

    def summary(self) -> str:
        return f"{len(self.laws)} laws registered, target predicted, {len(self.plots)} plots"


@dataclass(frozen=True)
class TargetScored(_Json):
    """The trained target's final checkpoint, its lm-eval results and the observation table
    read from them (what the gate and the verdict read)."""

    model: Checkpoint
    result: str
    table: str = ""  # empty in a state file from before 2026-12-03: the stage runs again

    @classmethod
    def from_dict(cls, d: dict) -> TargetScored:
        return cls(Checkpoint.from_dict(d["model"]), d["result"], d.get("table", ""))

    def missing(self, ctx) -> str | None:
        if not self.table:
            return "the target's observation table (not written by this state's version)"
        return _first_absent([Path(self.model.hf_dir) / META_FILE, self.result, self.table])

    def observations(self):
        from taskladder.laws.readers import read_ladder

        return read_ladder(self.table, "table")

    def summary(self) -> str:
        meta = self.model.meta
        return f"target {meta.run} trained to step {meta.step} and scored"


@dataclass(frozen=True)
class Gated(_Json):
    """The drift gate's verdict (gate.json) and the recorded evaluation it judged."""

    verdict: str
    passed: bool
    eval_run: str

    def missing(self, ctx) -> str | None:
        return (_first_absent([self.verdict])
                or _registry_missing(ctx.store, {"target evaluation": self.eval_run}, {}))

    def document(self) -> dict:
        return read_json(self.verdict)

    def summary(self) -> str:
        bad = [r["task"] for r in self.document()["rows"] if r["status"] != "ok"]
        return "PASS: every task within tolerance" if self.passed else f"DRIFT: {', '.join(bad)}"
