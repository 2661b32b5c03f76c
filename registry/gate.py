"""Target evaluations and the drift gate.

`check_target` records a real evaluation of the target (lm-eval results or a CSV, read by the law
engine's readers) as a run in `taskladder-target-evals`, linked to the registered predictions it
was compared with. `run_gate` compares each target's latest evaluation with its registered
predictions: a task passes when its error is within a bound in accuracy points, or inside the
prediction interval (`tolerance="interval"`), and when no re-fit moved its prediction by more
than `max_shift` points. The verdict is a JSON-ready dict; `format_table` prints it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from taskladder.common.errors import InputError
from taskladder.laws.observations import Observations
from taskladder.laws.readers import final_values, read_ladder

from .predictions import Prediction, check_target_name, registered_predictions
from .store import Store, open_store

EXPERIMENT = "taskladder-target-evals"
DEFAULT_TOLERANCE = 5.0  # accuracy points
DEFAULT_MAX_SHIFT = 2.0  # accuracy points a re-fit may move a registered prediction


def parse_tolerance(value) -> float | str:
    """Accuracy points (> 0) or "interval"."""
    if isinstance(value, str) and value.strip().lower() == "interval":
        return "interval"
    try:
        points = float(value)
    except (TypeError, ValueError):
        raise InputError(f"--tolerance: expected accuracy points or 'interval', got {value!r}") from None
    if not points > 0:
        raise InputError(f"--tolerance: must be > 0 points, got {value!r}")
    return points


def _actuals(obs: Observations, preds: dict[str, Prediction], source: str,
             run: str | None) -> dict[str, float]:
    runs = obs.unique("run")
    if run is not None:
        if run not in runs:
            raise InputError(f"{source}: no run {run!r} (runs: {', '.join(runs[:5])})")
        obs = obs.where(run=run)
    elif len(runs) > 1:
        raise InputError(f"{source}: holds {len(runs)} runs ({', '.join(runs[:5])}); pick one with --run")
    present = {(t, m) for t, m in zip(obs.task, obs.metric, strict=True)}
    missing = [f"{t} ({p.acc_metric})" for t, p in preds.items() if (t, p.acc_metric) not in present]
    if missing:
        raise InputError(f"target evaluation {source}: lacks predicted task(s) {', '.join(missing)}")
    return {t: next(iter(final_values(obs, t, p.acc_metric).values())) for t, p in preds.items()}


def check_target(path: str | Path, format: str | None = None, *, target: str,
                 tasks: Iterable[str] | None = None, run: str | None = None,
                 tracking_uri: str | None = None, store: Store | None = None) -> dict:
    """Record the target's real evaluation at `path`; returns the comparison rows (no verdict).

    Every predicted task (or each of `tasks`) must be in the evaluation; nothing is written
    otherwise. Recording the same evaluation again returns the run already there.
    """
    check_target_name(target)
    store = store or open_store(tracking_uri, create=False)
    preds = registered_predictions(store, target)
    if not preds:
        raise InputError(f"target {target!r}: no registered prediction in {store.uri}")
    if tasks is not None:
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in preds]
        if unknown:
            raise InputError(f"--tasks: no registered prediction of {', '.join(unknown)} for {target!r}")
        preds = {t: preds[t] for t in tasks}
    obs = read_ladder(path, format)
    actual = _actuals(obs, preds, str(path), run)
    run_id = _record_eval(store, target, str(path), obs, preds, actual)
    return {"target": target, "eval_run": run_id,
            "rows": [_row(target, preds[t], actual[t]) for t in preds]}


def _record_eval(store: Store, target: str, source: str, obs: Observations,
                 preds: dict[str, Prediction], actual: dict[str, float]) -> str:
    from mlflow.entities import Metric

    key = hashlib.sha256(f"{target}\x1f{obs.content_hash()}\x1f{sorted(actual)}".encode()).hexdigest()
    eid = store.experiment_id(EXPERIMENT)
    with store.exclusive():
        found = store.call("search_runs", [eid], filter_string=f"tags.eval_key = '{key}'",
                           max_results=1)
        if found:
            return found[0].info.run_id
        tags = {"target": target, "source": source, "eval_key": key,
                "observations_hash": obs.content_hash(), "tasks": ",".join(actual)}
        tags.update({f"prediction.{t}": p.run_id for t, p in preds.items()})
        tags.update({f"law.{t}": p.law_uri for t, p in preds.items()})
        run = store.call("create_run", eid, run_name=f"{target}-eval", tags=tags)
        ts = run.info.start_time
        metrics = [Metric(f"{t}/{preds[t].acc_metric}", v, ts, 0) for t, v in actual.items()]
        metrics += [Metric(f"{t}/error_points", 100.0 * (preds[t].values["acc"] - v), ts, 0)
                    for t, v in actual.items()]
        store.call("log_batch", run.info.run_id, metrics=metrics)
        store.call("set_terminated", run.info.run_id, "FINISHED")
        return run.info.run_id


def _row(target: str, p: Prediction, actual: float | None) -> dict:
    v = p.values
    return {"target": target, "task": p.task, "metric": p.acc_metric, "predicted": v["acc"],
            "low": v["acc_low"], "high": v["acc_high"], "actual": actual,
            "error": None if actual is None else 100.0 * (v["acc"] - actual),
            "shift": p.shift, "law": p.law_uri, "prediction_run": p.run_id}


def _latest_eval(store: Store, target: str):
    exp = store.call("get_experiment_by_name", EXPERIMENT)
    if exp is None:
        return None
    found = store.call("search_runs", [exp.experiment_id], filter_string=f"tags.target = '{target}'",
                       max_results=1, order_by=["attributes.start_time DESC"])
    return found[0] if found else None


def _eval_targets(store: Store) -> list[str]:
    exp = store.call("get_experiment_by_name", EXPERIMENT)
    runs = store.call("search_runs", [exp.experiment_id], max_results=10000) if exp else []
    return sorted({r.data.tags["target"] for r in runs if "target" in r.data.tags})


def run_gate(target: str | Iterable[str] | None = None, *, tolerance=DEFAULT_TOLERANCE,
             max_shift: float | None = DEFAULT_MAX_SHIFT, predictions_only: bool = False,
             tracking_uri: str | None = None, store: Store | None = None) -> dict:
    """Verdict for the target(s) (default: every target with a recorded evaluation).

    Row status: ok, DRIFT (outside tolerance), SHIFT (a re-fit moved the prediction more than
    `max_shift` points), MISSING (no evaluation of a predicted task). `passed` iff all ok.
    With `predictions_only`, evaluations are not needed and only shifts are checked.
    """
    tolerance = parse_tolerance(tolerance)
    if max_shift is not None and not max_shift > 0:
        raise InputError(f"--max-shift: must be > 0 points, got {max_shift!r}")
    store = store or open_store(tracking_uri, create=False)
    targets = [target] if isinstance(target, str) else list(target or [])
    if not targets:
        targets = _eval_targets(store)
        if not targets:
            raise InputError(f"no target evaluation recorded in {store.uri} (run taskladder check-target)")
    rows = []
    for name in targets:
        check_target_name(name)
        preds = registered_predictions(store, name)
        if not preds:
            raise InputError(f"target {name!r}: no registered prediction in {store.uri}")
        evaluation = None if predictions_only else _latest_eval(store, name)
        if evaluation is None and not predictions_only:
            raise InputError(f"target {name!r}: no evaluation recorded (run taskladder check-target)")
        for task, p in preds.items():
            actual = None if evaluation is None else evaluation.data.metrics.get(f"{task}/{p.acc_metric}")
            row = _row(name, p, actual)
            row["status"] = row_status(row, tolerance, max_shift, predictions_only)
            rows.append(row)
    return {"passed": all(r["status"] == "ok" for r in rows), "tolerance": tolerance,
            "max_shift": max_shift, "targets": targets, "rows": rows}


def row_status(row: dict, tolerance, max_shift: float | None, predictions_only: bool) -> str:
    if max_shift is not None and row["shift"] is not None and abs(row["shift"]) > max_shift:
        return "SHIFT"
    if predictions_only:
        return "ok"
    if row["actual"] is None:
        return "MISSING"
    if tolerance == "interval":
        within = row["low"] <= row["actual"] <= row["high"]
    else:
        within = abs(row["error"]) <= tolerance
    return "ok" if within else "DRIFT"


def format_table(verdict: dict) -> str:
    """The verdict as a fixed-width table, accuracy in points."""
    def pts(v):
        return f"{100 * v:7.2f}" if v is not None else f"{'-':>7s}"

    def signed(v):
        return f"{v:+7.2f}" if v is not None else f"{'-':>7s}"

    head = (f"{'target':12s} {'task':14s} {'metric':9s} {'pred':>7s} {'low':>7s} {'high':>7s} "
            f"{'actual':>7s} {'error':>7s} {'shift':>7s}  status")
    lines = [head, "-" * len(head)]
    for r in verdict["rows"]:
        lines.append(f"{r['target']:12s} {r['task']:14s} {r['metric']:9s} {pts(r['predicted'])} "
                     f"{pts(r['low'])} {pts(r['high'])} {pts(r['actual'])} {signed(r['error'])} "
                     f"{signed(r['shift'])}  {r.get('status', '')}")
    tol = verdict.get("tolerance")
    if "passed" in verdict:
        bad = sum(r["status"] != "ok" for r in verdict["rows"])
        rule = "prediction interval" if tol == "interval" else f"{tol:g} points"
        shift = verdict["max_shift"]
        lines.append(f"gate: {'PASS' if verdict['passed'] else 'FAIL'} ({bad} of "
                     f"{len(verdict['rows'])} rows outside tolerance = {rule}"
                     f"{f', max shift {shift:g} points' if shift is not None else ''})")
    return "\n".join(lines)
