"""Registered predictions: per target (name, N, D) and task, accuracy and interval, with lineage.

One MLflow run per (target, task) prediction in the experiment `taskladder-predictions`: params
target, N, D, task; metrics loss/acc with their intervals; tags naming the law version used
(`law_uri` = models:/taskladder-law-<task>/<version>), the loss the law predicts (`loss_metric`,
its step-1 feature, e.g. arc_easy/bpb) and how far each prediction can be trusted (`status`:
ok, caution or unpredictable, with `reasons`, for the accuracy; `loss_status` and
`loss_reasons` for the loss); the plots as artifacts. The latest run of a
(target, task) is its registered prediction. A new, different prediction (a re-fit on new ladder
data) records how far it moved from the one before (`shift` in accuracy points, `loss_shift` in
percent); the same prediction again adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from taskladder.common.errors import InputError
from taskladder.common.facts import TASKS

from .laws import (
    DEFAULT_ALIAS,
    LawVersion,
    check_alias,
    describe_version,
    load_law,
    model_name,
    move_aliases,
    plots_by_task,
    register_fit,
    resolve_version,
)
from .store import Store, open_store

EXPERIMENT = "taskladder-predictions"
VALUES = ("acc", "acc_low", "acc_high", "loss", "loss_low", "loss_high")
REPORT_SCHEMA = "taskladder.prediction/"  # the law engine's predict report, any version
STATUSES = ("ok", "caution", "unpredictable")
_TARGET_RE = re.compile(r"^[^'\"\\\s][^'\"\\\n]{0,99}$")
_ALIASES = {"low": "acc_low", "high": "acc_high"}  # short names some reports use


@dataclass(frozen=True)
class Assessment:
    """How far a task's predictions can be trusted (the law engine's verdict in its report):
    the accuracy's status and reasons, and the loss's (None: a report from before the loss
    had its own)."""

    status: str = "ok"
    reasons: tuple[str, ...] = ()
    loss_status: str | None = None
    loss_reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, task: str, entry: Mapping) -> Assessment:
        """From a report entry; an older report without `status` means ok."""
        status, reasons = _status(task, entry, "status", "reasons")
        loss_status, loss_reasons = _status(task, entry, "loss_status", "loss_reasons")
        return cls(status, reasons, loss_status if "loss_status" in entry else None, loss_reasons)

    def describe(self) -> str:
        out = self.status + (f" ({'; '.join(self.reasons)})" if self.reasons else "")
        if self.loss_status not in (None, "ok"):
            why = f" ({'; '.join(self.loss_reasons)})" if self.loss_reasons else ""
            out += f"; loss {self.loss_status}{why}"
        return out


def _status(task: str, entry: Mapping, key: str, reasons_key: str) -> tuple[str, tuple]:
    status = entry.get(key) or "ok"
    if status not in STATUSES:
        raise InputError(f"prediction of {task!r}: {key} {status!r}, expected one of "
                         f"{', '.join(STATUSES)}")
    reasons = entry.get(reasons_key) or []
    if isinstance(reasons, str) or not all(isinstance(r, str) for r in reasons):
        raise InputError(f"prediction of {task!r}: {reasons_key} must be a list of strings, "
                         f"got {reasons!r}")
    return status, tuple(reasons)


@dataclass(frozen=True)
class Prediction:
    """A registered prediction of one task for one target (accuracy as a fraction)."""

    target: str
    N: float
    D: float
    task: str
    acc_metric: str
    values: dict[str, float]
    law_uri: str
    run_id: str
    shift: float | None  # points moved from the previous prediction, None for the first
    loss_metric: str | None = None  # `<task>/<metric>` of the predicted loss (the law's feature)
    loss_shift: float | None = None  # percent the predicted loss moved
    assessment: Assessment = Assessment()

    @classmethod
    def from_run(cls, run) -> Prediction:
        p, t, m = run.data.params, run.data.tags, run.data.metrics
        reasons = _reasons(t.get("reasons") or "")
        loss_reasons = _reasons(t.get("loss_reasons") or "")
        return cls(target=p["target"], N=float(p["N"]), D=float(p["D"]), task=p["task"],
                   acc_metric=t.get("acc_metric", "acc"),
                   values={k: m[k] for k in VALUES if k in m},
                   law_uri=t.get("law_uri", ""), run_id=run.info.run_id, shift=m.get("shift"),
                   loss_metric=t.get("loss_metric"), loss_shift=m.get("loss_shift"),
                   assessment=Assessment(t.get("status") or "ok", reasons,
                                         t.get("loss_status"), loss_reasons))


def _reasons(tag: str) -> tuple[str, ...]:
    """A run's `reasons` tag: "; "-joined (older stores: a JSON list)."""
    if tag.startswith("["):
        return tuple(json.loads(tag))
    return tuple(tag.split("; ")) if tag else ()


def check_target_name(name: str) -> str:
    """Target names go into tags and search filters: no quotes, backslashes or newlines."""
    if not isinstance(name, str) or not _TARGET_RE.match(name):
        raise InputError(f"target name {name!r}: 1-100 characters without quotes, backslashes "
                         "or newlines")
    return name


def validate_target(target: Mapping) -> tuple[str, float, float]:
    """(name, N, D) of a target dict, validated."""
    for key in ("name", "N", "D"):
        if key not in target:
            raise InputError(f"target: missing {key!r} (need name, N and D)")
    name = check_target_name(str(target["name"]))
    try:
        N, D = float(target["N"]), float(target["D"])
    except (TypeError, ValueError):
        raise InputError(f"target {name!r}: N and D must be numbers, got {target['N']!r}, "
                         f"{target['D']!r}") from None
    if not (math.isfinite(N) and math.isfinite(D) and N > 0 and D > 0):
        raise InputError(f"target {name!r}: N and D must be finite and > 0, got {N}, {D}")
    return name, N, D


def _values(task: str, entry: Mapping) -> dict[str, float]:
    out = {}
    for key, value in entry.items():
        key = _ALIASES.get(key, key)
        if key in VALUES and value is not None:
            v = float(value if not hasattr(value, "item") else value.item())
            if not math.isfinite(v):
                raise InputError(f"prediction of {task!r}: {key} is not finite ({value!r})")
            out[key] = v
    if "acc" not in out:
        raise InputError(f"prediction of {task!r}: no 'acc' value")
    out.setdefault("acc_low", out["acc"])
    out.setdefault("acc_high", out["acc"])
    return out


def register_prediction(
    prediction: Mapping[str, Mapping],
    *,
    target: Mapping,
    versions: Mapping[str, LawVersion | int | str],
    assessments: Mapping[str, Assessment] | None = None,
    plots: Iterable[str | Path] | Mapping[str, Iterable[str | Path]] = (),
    tracking_uri: str | None = None,
    store: Store | None = None,
) -> dict[str, Prediction]:
    """Record `prediction` ({task: {acc, acc_low, acc_high, loss, ...}}) for `target`.

    `versions` names the law version behind each task (a LawVersion, a version number or an
    alias); every task needs one. `assessments` gives each task's status (default ok); `plots`
    are logged with each new prediction run (matched to tasks as in `register_fit`).
    Returns {task: the registered Prediction}.
    """
    name, N, D = validate_target(target)
    values = {task: _values(task, entry) for task, entry in prediction.items()}
    if not values:
        raise InputError(f"target {name!r}: the prediction holds no task")
    missing = [t for t in values if t not in versions]
    if missing:
        raise InputError(f"target {name!r}: no law version given for task(s) {', '.join(missing)}")
    plot_map = plots_by_task(list(values), plots)
    trust = {t: (assessments or {}).get(t, Assessment()) for t in values}
    store = store or open_store(tracking_uri)
    laws = {t: _law(store, t, versions[t]) for t in values}  # every link checked before writing
    eid = store.experiment_id(EXPERIMENT)
    return {t: _record(store, eid, (name, N, D), t, values[t], laws[t], trust[t], plot_map[t])
            for t in values}


def _law(store: Store, task: str, ref) -> tuple[int, dict[str, str]]:
    version = ref.version if isinstance(ref, LawVersion) else resolve_version(store, task, ref)
    mv = store.call("get_model_version", model_name(task), str(version))
    return int(version), mv.tags


def _record(store: Store, eid: str, target: tuple[str, float, float], task: str,
            values: dict[str, float], law: tuple[int, dict[str, str]], trust: Assessment,
            plots: list[Path]) -> Prediction:
    from mlflow.entities import Metric, Param

    (name, N, D), (version, law_tags) = target, law
    law_uri = f"models:/{model_name(task)}/{version}"
    key = hashlib.sha256(json.dumps([name, repr(N), repr(D), task, law_uri, values,
                                     trust.status, trust.reasons, trust.loss_status,
                                     trust.loss_reasons],
                                    sort_keys=True).encode()).hexdigest()
    with store.exclusive():
        latest = latest_runs(store, name, task, eid=eid, max_results=1)
        if latest and latest[0].data.tags.get("prediction_key") == key:
            return Prediction.from_run(_settle(store, latest[0], mine=False))
        tags = {"target": name, "task": task, "acc_metric": law_tags.get("acc_metric", "acc"),
                "law_uri": law_uri, "law_model": model_name(task), "law_version": str(version),
                "prediction_key": key, "status": trust.status,
                "reasons": "; ".join(trust.reasons)}
        if trust.loss_status is not None:
            tags.update(loss_status=trust.loss_status, loss_reasons="; ".join(trust.loss_reasons))
        if "feature" in law_tags:
            tags["loss_metric"] = law_tags["feature"]
        metrics = dict(values)
        if latest:
            metrics.update(_shifts(latest[0].data.metrics, values))
            tags["previous_prediction"] = latest[0].info.run_id
        run = store.create_run(eid, f"{name}-{task}", tags)
        ts = run.info.start_time
        with store.writing(run.info.run_id):
            store.call("log_batch", run.info.run_id,
                       metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
                       params=[Param("target", name), Param("N", repr(N)),
                               Param("D", repr(D)), Param("task", task)])
            for plot in plots:
                store.call("log_artifact", run.info.run_id, str(plot), "plots")
            store.call("set_terminated", run.info.run_id, "FINISHED")
        mine = store.call("get_run", run.info.run_id)
        return Prediction.from_run(_settle(store, mine, mine=True))


def _settle(store: Store, run, mine: bool):
    """The one run of a prediction that writers of a shared server recorded at once (the same
    prediction after the same predecessor); this writer's own losing run is deleted."""
    t = run.data.tags
    key = "\x1f".join(("prediction", t["target"], t["task"], t.get("previous_prediction", ""),
                       t["prediction_key"]))
    kept = store.canonical(key, run.info.run_id)
    if kept == run.info.run_id:
        return run
    if mine:
        store.call("delete_run", run.info.run_id)
    return store.call("get_run", kept)


def _shifts(before: Mapping[str, float], now: Mapping[str, float]) -> dict[str, float]:
    """How far a new prediction moved: accuracy in points, loss in percent (where both have it)."""
    out = {"shift": 100.0 * (now["acc"] - before["acc"])}
    if before.get("loss") and "loss" in now:
        out["loss_shift"] = 100.0 * (now["loss"] - before["loss"]) / before["loss"]
    return out


def latest_runs(store: Store, target: str, task: str | None = None, *, eid: str | None = None,
                max_results: int = 1000) -> list:
    """Finished prediction runs of `target` (one task or all), newest first."""
    if eid is None:
        exp = store.call("get_experiment_by_name", EXPERIMENT)
        if exp is None:
            return []
        eid = exp.experiment_id
    # Only finished runs: one still being written (params not yet logged) is no prediction yet.
    query = (f"tags.target = '{target}' and attributes.status = 'FINISHED'"
             + (f" and tags.task = '{task}'" if task else ""))
    return store.call("search_runs", [eid], filter_string=query, max_results=max_results,
                      order_by=["attributes.start_time DESC"])


def registered_predictions(store: Store, target: str) -> dict[str, Prediction]:
    """The registered (latest) prediction of every task predicted for `target`."""
    out: dict[str, Prediction] = {}
    for run in latest_runs(store, target):
        task = run.data.tags.get("task")
        if task and task not in out:
            out[task] = Prediction.from_run(run)
    order = {t: i for i, t in enumerate(TASKS)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def predict_from_registry(target: Mapping, tasks: list[str], *, alias: str = DEFAULT_ALIAS,
                          tracking_uri: str | None = None,
                          store: Store | None = None) -> dict[str, Prediction]:
    """Predict `target` with the law versions that `alias` marks, through their pyfunc models,
    and register the result: the prediction is exactly what a model consumer would get."""
    import pandas as pd

    name, N, D = validate_target(target)
    store = store or open_store(tracking_uri, create=False)
    versions = {t: resolve_version(store, t, alias) for t in tasks}
    table = pd.DataFrame({"N": [N], "D": [D]})
    prediction = {t: load_law(t, versions[t], store=store).predict(table).iloc[0].to_dict()
                  for t in tasks}
    return register_prediction(prediction, target={"name": name, "N": N, "D": D},
                               versions=versions, store=store)


def register_report(
    report: Mapping,
    fits: Mapping,
    *,
    observations=None,
    ladder: str | None = None,
    plots=(),
    alias: str | None = DEFAULT_ALIAS,
    tracking_uri: str | None = None,
    store: Store | None = None,
) -> dict[str, Prediction]:
    """Register a prediction report (laws/report.py): the fits become law versions, each
    tagged and described with this prediction and its status; then each task's prediction is
    recorded with a link to its version. Plots go with both. The report (schema
    taskladder.prediction/<n>) and target are validated before anything is written."""
    schema = str(report.get("schema"))
    if not schema.startswith(REPORT_SCHEMA):
        raise InputError(f"prediction report: schema {report.get('schema')!r}, expected "
                         f"{REPORT_SCHEMA}<version>")
    target = report.get("target") or {}
    name, N, D = validate_target(target)
    tasks = report.get("tasks") or {}
    prediction = {t: e.get("predicted", {}) for t, e in tasks.items()}
    values = {task: _values(task, entry) for task, entry in prediction.items()}
    trust = {t: Assessment.of(t, e) for t, e in tasks.items()}
    missing = [t for t in prediction if t not in fits]
    if missing or not prediction:
        raise InputError(f"prediction report: no fit for task(s) {', '.join(missing) or '(none)'}")
    if alias is not None:
        check_alias(alias)
    store = store or open_store(tracking_uri)
    versions = register_fit({t: fits[t] for t in prediction}, store=store,
                            observations=observations, ladder=ladder, plots=plots, alias=None)
    for task, version in versions.items():
        describe_version(store, version, _summary(name, N, D, fits[task], values[task]),
                         trust[task].status, trust[task].reasons, trust[task].loss_status,
                         trust[task].loss_reasons)
    out = register_prediction(prediction, target={"name": name, "N": N, "D": D},
                              versions=versions, assessments=trust, plots=plots, store=store)
    if alias is not None:  # last: the alias never names a law without its prediction
        move_aliases(store, versions, alias)
    return out


def _summary(name: str, N: float, D: float, fit, v: dict[str, float]) -> str:
    """One readable line: the target and the predicted accuracy and loss with intervals."""
    text = (f"{name} (N={N:.3g}, D={D:.3g}): {fit.acc_metric} {100 * v['acc']:.2f}% "
            f"[{100 * v['acc_low']:.2f}, {100 * v['acc_high']:.2f}]")
    if "loss" in v:
        low, high = v.get("loss_low", v["loss"]), v.get("loss_high", v["loss"])
        text += (f"; {fit.x_task}/{fit.x_metric} {v['loss']:.4f} [{low:.4f}, {high:.4f}]")
    return text
