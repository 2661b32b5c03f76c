"""Fitted laws as registered-model versions: `taskladder-law-<task>`, JSON params, no pickle.

Each version is the models-from-code file `law_model.py` plus the fit's `to_dict()` as
`fit.json`, logged from a run in the experiment `taskladder-laws` that also holds the plots.
Tags carry the lineage (method, ladder runs, observation hash), the fit's health (errors,
degenerate flag) and, once a prediction report is registered, its status (ok, caution or
unpredictable, with reasons), which the version's description spells out with the prediction.
A fit is identified by the hash of its JSON: registering it again returns the existing
version. An alias (default `current`) marks the chosen version.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from taskladder.common.errors import InputError
from taskladder.laws.observations import Observations

from .ladder_runs import registered_run_ids
from .store import Store, is_conflict, open_store

if TYPE_CHECKING:  # scipy behind it: the gate and the readers of the registry do without
    from taskladder.laws.chained import ChainedFit

MODEL_PREFIX = "taskladder-law-"
EXPERIMENT = "taskladder-laws"
DEFAULT_ALIAS = "current"
FIT_HASH_TAG = "fit_hash"
# What a law version's pyfunc `predict` returns for each (N, D) row.
OUTPUT_COLUMNS = ("loss", "loss_low", "loss_high", "acc", "acc_low", "acc_high")
_MODEL_CODE = Path(__file__).with_name("law_model.py")
_TASK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")


def model_name(task: str) -> str:
    return MODEL_PREFIX + task


def fit_hash(fit: ChainedFit) -> str:
    """Identity of a fit: sha256 of its canonical JSON."""
    text = json.dumps(fit.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LawVersion:
    task: str
    name: str
    version: int
    created: bool  # False when this exact fit was already registered

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_fit(
    fits: ChainedFit | Mapping[str, ChainedFit] | Iterable[ChainedFit],
    *,
    tracking_uri: str | None = None,
    store: Store | None = None,
    observations: Observations | None = None,
    ladder: str | None = None,
    plots: Iterable[str | Path] | Mapping[str, Iterable[str | Path]] = (),
    alias: str | None = DEFAULT_ALIAS,
) -> dict[str, LawVersion]:
    """Register each fit (one per task) as a model version; returns {task: LawVersion}.

    `observations` (the table the fits were made from) adds the ladder runs used and is checked
    against each fit's data hash. `plots` is a list of files (matched to a task by the task key in
    the file name; the others go with every task) or a {task: files} mapping.
    """
    fits = _as_list(fits)
    runs = {f.task: _runs_used(f, observations) for f in fits}
    plot_map = plots_by_task([f.task for f in fits], plots)
    if alias is not None:
        check_alias(alias)
    store = store or open_store(tracking_uri)
    versions = {f.task: _register_one(store, f, runs[f.task], ladder, plot_map[f.task])
                for f in fits}
    if alias is not None:  # last: the alias never names a version whose registration failed
        move_aliases(store, versions, alias)
    return versions


def move_aliases(store: Store, versions: Mapping[str, LawVersion], alias: str) -> None:
    for v in versions.values():
        store.upsert("set_registered_model_alias", v.name, alias, str(v.version))


def _as_list(fits) -> list[ChainedFit]:
    from taskladder.laws.chained import ChainedFit

    if isinstance(fits, ChainedFit):
        fits = [fits]
    elif isinstance(fits, Mapping):
        fits = list(fits.values())
    fits = list(fits)
    for f in fits:
        if not isinstance(f, ChainedFit):
            raise InputError(f"register_fit: expected ChainedFit objects, got {type(f).__name__}")
    tasks = [f.task for f in fits]
    for task in tasks:
        check_task(task)
    if not fits or len(set(tasks)) != len(tasks):
        raise InputError(f"register_fit: need one fit per task, got tasks {tasks}")
    return fits


def check_task(task: str) -> str:
    """A task names a registered model and keys metrics `<task>/<metric>`: no '/' or quotes."""
    if not isinstance(task, str) or not _TASK_RE.match(task):
        raise InputError(f"task {task!r}: use letters, digits, '_', '.', '-' (max 100) to "
                         "register it")
    return task


def _runs_used(fit: ChainedFit, obs: Observations | None) -> list[str]:
    if obs is None:
        return []
    rows = obs.where(task=[fit.task, fit.x_task])
    if fit.data_hash and rows.content_hash() != fit.data_hash:
        raise InputError(f"fit of {fit.task!r}: the observations given are not the ones it was "
                         f"fitted on (data hash {fit.data_hash[:12]} != "
                         f"{rows.content_hash()[:12]})")
    return sorted(rows.unique("run"))


def plots_by_task(tasks: list[str], plots) -> dict[str, list[Path]]:
    """{task: plot files}: a mapping as given, or a list split by the task key in each file
    name (a file naming no task goes with every task); every file must exist."""
    if isinstance(plots, Mapping):
        out = {t: [Path(p) for p in plots.get(t, ())] for t in tasks}
    else:
        paths = [Path(p) for p in plots]
        mine = {t: [p for p in paths if t in p.stem] for t in tasks}
        shared = [p for p in paths if not any(t in p.stem for t in tasks)]
        out = {t: mine[t] + shared for t in tasks}
    for p in (p for ps in out.values() for p in ps):
        if not p.is_file():
            raise InputError(f"plot {str(p)!r} does not exist")
    return out


def check_alias(alias: str) -> None:
    """MLflow's alias rules, checked before anything is written."""
    if not _ALIAS_RE.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise InputError(f"alias {alias!r}: use letters, digits, '_', '-' "
                         "(not 'latest' or v<number>)")


def _version_tags(fit: ChainedFit, fhash: str, runs: list[str],
                  ladder: str | None) -> dict[str, str]:
    """Short scalar tags; the fit's errors and flags are JSON artifacts of the version's run,
    the ladder runs its dataset inputs."""
    from taskladder.laws.report import form_label

    tags = {
        "task": fit.task, "method": fit.method, "acc_metric": fit.acc_metric,
        "feature": f"{fit.x_task}/{fit.x_metric}", "form": form_label(fit)[:250],
        FIT_HASH_TAG: fhash, "observations_hash": fit.data_hash,
        "degenerate": str(fit.flags["degenerate"]).lower(),
    }
    if runs:
        tags["ladder_runs"] = str(len(runs))
    if ladder:
        tags["ladder"] = ladder
    return tags


def _lineage(store: Store, fit: ChainedFit, runs: list[str], ladder: str | None):
    """The ladder runs a fit was made from as MLflow dataset inputs: one per run, its source
    the run's MLflow run (runs:/<id>) where the ladder is registered in this store."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    try:
        ids = registered_run_ids(store, ladder) if ladder else {}
    except InputError:  # a name no ladder experiment can have: none is registered
        ids = {}
    return [DatasetInput(Dataset(name=run, digest=(fit.data_hash or "-")[:36],
                                 source_type="mlflow_run" if run in ids else "ladder",
                                 source=f"runs:/{ids[run]}" if run in ids else (ladder or run)),
                         tags=[InputTag("mlflow.data.context", "training")])
            for run in runs]


def _find_version(store: Store, name: str, fhash: str):
    query = f"name = '{name}' and tags.{FIT_HASH_TAG} = '{fhash}'"
    found = store.call("search_model_versions", query)
    return min(found, key=lambda v: int(v.version)) if found else None


def _register_one(store: Store, fit: ChainedFit, runs: list[str], ladder: str | None,
                  plots: list[Path]) -> LawVersion:
    name, fhash = model_name(fit.task), fit_hash(fit)
    created = False
    found = _find_version(store, name, fhash)
    if found is None:
        with store.exclusive():
            found = _find_version(store, name, fhash)
            if found is None:
                version, created = _create_version(store, fit, fhash, runs, ladder, plots), True
    if found is not None:
        version = int(found.version)
    kept = int(store.canonical(f"law-version\x1f{name}\x1f{fhash}", str(version)))
    if kept != version and created:  # a writer of a shared server registered this fit first
        mine = store.call("get_model_version", name, str(version))
        store.call("delete_model_version", name, str(version))
        store.call("delete_run", mine.run_id)
        created = False
    version = kept
    if plots and not created:
        run_id = store.call("get_model_version", name, str(version)).run_id
        if not store.call("list_artifacts", run_id, "plots"):
            for plot in plots:  # registered before without plots: add them now
                store.call("log_artifact", run_id, str(plot), "plots")
    return LawVersion(fit.task, name, version, created=created)


def _create_version(store: Store, fit: ChainedFit, fhash: str, runs: list[str],
                    ladder: str | None, plots: list[Path]) -> int:
    import mlflow
    import pandas as pd

    tags = _version_tags(fit, fhash, runs, ladder)
    eid = store.experiment_id(EXPERIMENT)
    with tempfile.TemporaryDirectory() as tmp:
        fit_json = Path(tmp, "fit.json")
        fit_json.write_text(json.dumps(fit.to_dict(), indent=1))  # key order is meaningful
        mlflow.pyfunc.save_model(
            Path(tmp, "model"), python_model=str(_MODEL_CODE), artifacts={"fit": str(fit_json)},
            signature=_signature(), pip_requirements=_requirements(),
            input_example=pd.DataFrame({"N": [1e9], "D": [2e10]}),  # MLflow checks the model on it
        )
        inputs = _lineage(store, fit, runs, ladder)
        run = store.create_run(eid, f"law-{fit.task}-{fhash[:8]}", tags)
        run_id = run.info.run_id
        with store.writing(run_id):  # the run and its version, or neither
            return _fill_version(store, run, fit, tags, tmp, plots, inputs)


def _fill_version(store: Store, run, fit: ChainedFit, tags: dict[str, str], tmp: str,
                  plots: list[Path], inputs: list) -> int:
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    name, run_id, fit_json = model_name(fit.task), run.info.run_id, Path(tmp, "fit.json")
    params = [Param(f"{step}.{k}", repr(v)) for step in ("step1", "step2")
              for k, v in fit.to_dict()[step]["params"].items()]
    params += [Param(f"settings.{k}", str(v)) for k, v in fit.settings.to_dict().items()]
    metrics = [Metric(f"{step}/{k}", float(v), run.info.start_time, 0)
               for step in ("step1", "step2")
               for k, v in getattr(fit, step).errors.items() if isinstance(v, int | float)]
    store.call("log_batch", run_id, metrics=metrics, params=params)
    if inputs:
        store.call("log_inputs", run_id, datasets=inputs)
    store.call("log_artifacts", run_id, str(Path(tmp, "model")), "model")
    store.call("log_artifact", run_id, str(fit_json))
    d = fit.to_dict()
    store.call("log_dict", run_id, {s: d[s]["errors"] for s in ("step1", "step2")},
               "fit_errors.json")
    store.call("log_dict", run_id, d["flags"], "flags.json")
    for p in plots:
        store.call("log_artifact", run_id, str(p), "plots")
    store.call("set_terminated", run_id, "FINISHED")
    try:
        store.call("create_registered_model", name, tags={"task": fit.task},
                   description=f"Chained task scaling law for {fit.task} (taskladder).")
    except MlflowException as exc:  # made meanwhile (a server may report the unique key)
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" and not is_conflict(exc):
            raise
    mv = store.call("create_model_version", name, f"{run.info.artifact_uri}/model",
                    run_id=run_id, tags=tags)
    return int(mv.version)


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", "N"), ColSpec("double", "D")]),
        outputs=Schema([ColSpec("double", c) for c in OUTPUT_COLUMNS]),
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    packages = ("mlflow", "numpy", "pandas", "scipy", "taskladder")
    return [f"{pkg}=={version(pkg)}" for pkg in packages]


def describe_version(store: Store, version: LawVersion, prediction: str, status: str,
                     reasons: Iterable[str] = (), loss_status: str | None = None,
                     loss_reasons: Iterable[str] = ()) -> None:
    """Tag a law version with the statuses of its latest prediction (the accuracy's `status`,
    the loss's `loss_status`), and describe that prediction in the version's description (what
    the MLflow UI shows on the version's page)."""
    reasons = list(reasons)
    name, number = version.name, str(version.version)
    store.upsert("set_model_version_tag", name, number, "status", status)
    store.upsert("set_model_version_tag", name, number, "reasons", "; ".join(reasons))
    why = f" ({'; '.join(reasons)})" if reasons else ""
    loss = ""
    if loss_status is not None:
        loss_reasons = list(loss_reasons)
        store.upsert("set_model_version_tag", name, number, "loss_status", loss_status)
        store.upsert("set_model_version_tag", name, number, "loss_reasons",
                     "; ".join(loss_reasons))
        lwhy = f" ({'; '.join(loss_reasons)})" if loss_reasons else ""
        loss = f" Loss status: {loss_status}{lwhy}."
    store.call("update_model_version", name, number,
               description=f"Latest prediction: {prediction}.{loss} Status: {status}{why}.")


def resolve_version(store: Store, task: str, ref: str | int = DEFAULT_ALIAS) -> int:
    """The version number that `ref` (an alias or a version number) names for `task`."""
    from mlflow.exceptions import MlflowException

    name = model_name(task)
    try:
        store.call("get_registered_model", name)
    except MlflowException:
        raise InputError(f"registered model {name!r} does not exist in {store.uri}") from None
    try:
        if isinstance(ref, int) or str(ref).isdigit():
            return int(store.call("get_model_version", name, str(ref)).version)
        return int(store.call("get_model_version_by_alias", name, str(ref)).version)
    except MlflowException:
        kind = "version" if str(ref).isdigit() else "alias"
        raise InputError(f"registered model {name!r} has no {kind} {str(ref)!r}") from None


def set_alias(store: Store, task: str, alias: str, version: int) -> None:
    check_alias(alias)
    resolve_version(store, task, version)
    store.upsert("set_registered_model_alias", model_name(task), alias, str(version))


def load_law(task: str, ref: str | int = DEFAULT_ALIAS, *, tracking_uri: str | None = None,
             store: Store | None = None):
    """The pyfunc model of a law version (checked first, so a wrong name is one clear line).

    The version's files are fetched with the store's own client and loaded from disk, so
    MLflow's global tracking and registry URIs are neither read nor changed.
    """
    import mlflow

    store = store or open_store(tracking_uri, create=False)
    version = resolve_version(store, task, ref)
    mv = store.call("get_model_version", model_name(task), str(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = store.call("download_artifacts", mv.run_id, "model", tmp)
        return mlflow.pyfunc.load_model(local)
