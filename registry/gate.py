"""Target evaluations and the drift gate.

`record_evaluation` records a real evaluation of the target (lm-eval results or a CSV, read by
the law engine's readers) as a run in `taskladder-target-evals`: each predicted task's accuracy
and, where the evaluation has it, the task loss its law predicts (e.g. bits per byte), linked to the
registered predictions it was compared with. `run_gate` compares an evaluation of each target
with its registered predictions under a `GateRule` (rule.py): accuracy in points or task loss in
percent, or inside the prediction interval, and no re-fit moved a prediction by more than the
rule's `max_shift`. The evaluation gated is the one named (`evaluation=`, or the gate's
`--results`), else the one most recently recorded or re-checked. A task the law engine marked
`unpredictable` is `untrusted`: neither pass nor drift, a failure only with a strict rule.
The verdict is a JSON-ready dict; `format_table` prints it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from taskladder.common.errors import InputError
from taskladder.common.target import target_run
from taskladder.laws.observations import Observations
from taskladder.laws.readers import final_values, read_ladder

from .predictions import Prediction, check_target_name, registered_predictions
from .rule import DEFAULT, GateRule
from .store import Store, open_store
from .verdicts import record_verdict

EXPERIMENT = "taskladder-target-evals"
CHECKED = "checked_at"  # tag: when an evaluation was last recorded or re-checked (UTC, ISO)


def _measured(obs: Observations, preds: dict[str, Prediction], source: str,
              run: str | None) -> dict[str, float]:
    """{metric key: value} of the evaluation for every predicted task: its accuracy and the
    loss its law predicts, where present; a task with neither is an error."""
    obs = obs.where(run=target_run(obs.unique("run"), run, source))
    present = {f"{t}/{m}" for t, m in zip(obs.task, obs.metric, strict=True)}
    out, missing = {}, []
    for task, p in preds.items():
        keys = [k for k in (f"{task}/{p.acc_metric}", p.loss_metric) if k in present]
        if not keys:
            missing.append(f"{task} ({p.acc_metric}" + (f" or {p.loss_metric})"
                                                        if p.loss_metric else ")"))
        for key in keys:
            t, m = key.split("/", 1)
            out[key] = next(iter(final_values(obs, t, m).values()))
    if missing:
        raise InputError(f"target evaluation {source}: lacks predicted task(s) "
                         f"{', '.join(missing)}")
    return out


def record_evaluation(path: str | Path, format: str | None = None, *, target: str,
                 tasks: Iterable[str] | None = None, run: str | None = None,
                 metric: str = "acc", tolerance=None, tracking_uri: str | None = None,
                 store: Store | None = None) -> dict:
    """Record the target's real evaluation at `path`; returns its run id and the comparison rows
    under `metric` and `tolerance` (as `run_gate`'s). The verdict is `run_gate`'s.

    Every predicted task (or each of `tasks`) must be in the evaluation; nothing is written
    otherwise. Recording the same evaluation again returns the run already there and makes it
    the target's most recently checked evaluation.
    """
    check_target_name(target)
    rule = GateRule.parse(metric, tolerance, None)
    store = store or open_store(tracking_uri, create=False)
    preds = registered_predictions(store, target)
    if not preds:
        raise InputError(f"target {target!r}: no registered prediction in {store.uri}")
    if tasks is not None:
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in preds]
        if unknown:
            raise InputError(f"--tasks: no registered prediction of {', '.join(unknown)} "
                             f"for {target!r}")
        preds = {t: preds[t] for t in tasks}
    obs = read_ladder(path, format)
    measured = _measured(obs, preds, str(path), run)
    run_id = _record_eval(store, target, str(path), obs, preds, measured)
    return {"target": target, "eval_run": run_id, "metric": rule.metric,
            "rows": [_row(target, p, measured, rule, False) for p in preds.values()]}


def _record_eval(store: Store, target: str, source: str, obs: Observations,
                 preds: dict[str, Prediction], measured: dict[str, float]) -> str:
    from mlflow.entities import Metric, RunTag

    key = hashlib.sha256(f"{target}\x1f{obs.content_hash()}\x1f{sorted(measured)}".encode())
    key = key.hexdigest()
    eid = store.experiment_id(EXPERIMENT)
    now = datetime.now(UTC).isoformat(timespec="microseconds")  # sorts as it reads
    with store.exclusive():
        found = store.call("search_runs", [eid], max_results=1, filter_string=(
            f"tags.eval_key = '{key}' and attributes.status = 'FINISHED'"))
        if found:  # the same evaluation again: now the most recently checked one
            run_id = store.canonical(f"eval\x1f{key}", found[0].info.run_id)
            store.call("log_batch", run_id, tags=[RunTag(CHECKED, now)])
            return run_id
        tags = {"target": target, "source": source, "eval_key": key,
                "observations_hash": obs.content_hash(), "tasks": ",".join(preds)}
        tags.update({f"prediction.{t}": p.run_id for t, p in preds.items()})
        tags.update({f"law.{t}": p.law_uri for t, p in preds.items()})
        tags[CHECKED] = now
        run = store.create_run(eid, f"{target}-eval", tags)
        ts = run.info.start_time
        metrics = [Metric(k, v, ts, 0) for k, v in measured.items()]
        for task, p in preds.items():
            for name, (pred, actual, _) in _errors(p, measured).items():
                metrics.append(Metric(f"{task}/{name}", _error(name, pred, actual), ts, 0))
        with store.writing(run.info.run_id):
            store.call("log_batch", run.info.run_id, metrics=metrics)
            store.call("set_terminated", run.info.run_id, "FINISHED")
        kept = store.canonical(f"eval\x1f{key}", run.info.run_id)
        if kept != run.info.run_id:  # a writer of a shared server recorded it first
            store.call("delete_run", run.info.run_id)
        return kept


def _errors(p: Prediction, measured: Mapping[str, float]) -> dict[str, tuple]:
    """{error name: (predicted, actual, metric)} for the measures both sides have."""
    out = {}
    acc = measured.get(f"{p.task}/{p.acc_metric}")
    if acc is not None:
        out["error_points"] = (p.values["acc"], acc, p.acc_metric)
    loss = measured.get(p.loss_metric) if p.loss_metric else None
    if loss is not None and "loss" in p.values:
        out["loss_error_pct"] = (p.values["loss"], loss, p.loss_metric)
    return out


def _error(name: str, predicted: float, actual: float) -> float:
    if name == "error_points":
        return 100.0 * (predicted - actual)
    return 100.0 * (predicted - actual) / actual


def _row(target: str, p: Prediction, measured: Mapping[str, float], rule: GateRule,
         predictions_only: bool) -> dict:
    """One task's comparison under `rule`: values of the rule's measure, error, shift, status."""
    v = p.values
    if rule.metric == "acc":
        keys, metric, actual = ("acc", "acc_low", "acc_high"), p.acc_metric, \
            measured.get(f"{p.task}/{p.acc_metric}")
        shift = p.shift
    else:
        keys, metric = ("loss", "loss_low", "loss_high"), p.loss_metric or "loss"
        actual = measured.get(p.loss_metric) if p.loss_metric else None
        shift = p.loss_shift
    predicted, low, high = (v.get(k) for k in keys)
    if predicted is not None:
        low, high = (predicted if low is None else low), (predicted if high is None else high)
    error = None
    if predicted is not None and actual is not None:
        error = _error("error_points" if rule.metric == "acc" else "loss_error_pct",
                       predicted, actual)
    row = {"target": target, "task": p.task, "metric": metric, "predicted": predicted,
           "low": low, "high": high, "actual": actual, "error": error, "shift": shift,
           "trust": trust_for(rule.metric, p.assessment.status, p.assessment.reasons,
                              p.assessment.loss_status),
           "reasons": list(p.assessment.loss_reasons if rule.metric == "loss"
                           and p.assessment.loss_status is not None else p.assessment.reasons),
           "law": p.law_uri, "prediction_run": p.run_id}
    row["status"] = row_status(row, rule, predictions_only)
    return row


def trust_for(metric: str, status: str, reasons, loss_status: str | None = None) -> str:
    """The status of the prediction the rule compares: the accuracy's for `acc`, the loss's for
    `loss`. A prediction registered before the loss had its own status: the loss comes from
    step 1 alone, so only a degenerate fit made it untrusted."""
    if metric != "loss":
        return status
    if loss_status is not None:
        return loss_status
    if status == "unpredictable" and "degenerate fit" not in reasons:
        return "ok"
    return status


def row_status(row: dict, rule: GateRule, predictions_only: bool) -> str:
    """untrusted (an unpredictable task), SHIFT, MISSING, DRIFT or ok."""
    if row["trust"] == "unpredictable":
        return "untrusted"
    shift = row["shift"]
    if rule.max_shift is not None and shift is not None and abs(shift) > rule.max_shift:
        return "SHIFT"
    if predictions_only:
        return "ok"
    if row["actual"] is None or row["predicted"] is None:
        return "MISSING"
    if rule.tolerance == "interval":
        within = row["low"] <= row["actual"] <= row["high"]
    else:
        within = abs(row["error"]) <= rule.tolerance
    return "ok" if within else "DRIFT"


def _latest_eval(store: Store, target: str):
    """The target's evaluation most recently recorded or re-checked."""
    exp = store.call("get_experiment_by_name", EXPERIMENT)
    if exp is None:
        return None
    found = store.call("search_runs", [exp.experiment_id],
                       filter_string=f"tags.target = '{target}' and attributes.status = 'FINISHED'",
                       max_results=1,
                       order_by=[f"tags.{CHECKED} DESC", "attributes.start_time DESC"])
    return found[0] if found else None


def _eval_targets(store: Store) -> list[str]:
    exp = store.call("get_experiment_by_name", EXPERIMENT)
    runs = store.call("search_runs", [exp.experiment_id], max_results=10000) if exp else []
    return sorted({r.data.tags["target"] for r in runs if "target" in r.data.tags})


def _evaluation(store: Store, target: str, run_id: str | None):
    if run_id is None:
        found = _latest_eval(store, target)
        if found is None:
            raise InputError(f"target {target!r}: no evaluation recorded "
                             "(run taskladder check-target)")
        return found
    from mlflow.exceptions import MlflowException

    try:
        found = store.call("get_run", run_id)
    except MlflowException:
        raise InputError(f"evaluation {run_id!r}: no such run in {store.uri}") from None
    if found.data.tags.get("target") != target or "eval_key" not in found.data.tags:
        raise InputError(f"evaluation {run_id!r}: not an evaluation of target {target!r}")
    return found


def run_gate(target: str | Iterable[str] | None = None, *, metric: str = "acc",
             tolerance=None, max_shift=DEFAULT, strict: bool = False,
             evaluation: str | Mapping[str, str] | None = None, predictions_only: bool = False,
             tracking_uri: str | None = None, store: Store | None = None) -> dict:
    """Verdict for the target(s) (default: every target with a recorded evaluation).

    `metric` "acc" (tolerance in points, default 5) or "loss" (relative, "5%"); either may use
    "interval". `max_shift` in the same unit (default 2; None: not checked). `evaluation` is the
    evaluation run to gate (one target) or {target: run id}; the default is each target's most
    recently recorded or re-checked one. Row status: ok, DRIFT (outside tolerance), SHIFT (a
    re-fit moved the prediction more than `max_shift`), MISSING (no measured or predicted value
    of the metric), untrusted (the task is unpredictable). `passed` iff every row is ok, or
    untrusted when not `strict`. With `predictions_only`, evaluations are not needed and only
    shifts are checked.
    """
    rule = GateRule.parse(metric, tolerance, max_shift, strict)
    store = store or open_store(tracking_uri, create=False)
    targets = [target] if isinstance(target, str) else list(target or [])
    if not targets:
        targets = _eval_targets(store)
        if not targets:
            raise InputError(f"no target evaluation recorded in {store.uri} "
                             "(run taskladder check-target)")
    if isinstance(evaluation, str):
        if len(targets) != 1:
            raise InputError("an evaluation run id gates exactly one target")
        evaluation = {targets[0]: evaluation}
    rows, gated = [], {}
    for name in targets:
        check_target_name(name)
        preds = registered_predictions(store, name)
        if not preds:
            raise InputError(f"target {name!r}: no registered prediction in {store.uri}")
        measured = {}
        if not predictions_only:
            run = _evaluation(store, name, (evaluation or {}).get(name))
            gated[name], measured = run.info.run_id, run.data.metrics
        rows += [_row(name, p, measured, rule, predictions_only) for p in preds.values()]
    passed = all(r["status"] == "ok" or (r["status"] == "untrusted" and not rule.strict)
                 for r in rows)
    verdict = {"passed": passed, **rule.to_dict(), "targets": targets, "evaluations": gated,
               "rows": rows}
    if gated:
        try:  # the verdict stands even where the store cannot take it (read-only)
            record_verdict(store, verdict)
        except Exception as exc:
            verdict["not_recorded"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return verdict


def format_table(verdict: dict) -> str:
    """The verdict as a fixed-width table: accuracy in points, or task loss with errors in %."""
    loss = verdict.get("metric") == "loss"

    def value(v):
        if v is None:
            return f"{'-':>7s}"
        return f"{v:7.4f}" if loss else f"{100 * v:7.2f}"

    def signed(v):
        return f"{v:+7.2f}" if v is not None else f"{'-':>7s}"

    err = "err %" if loss else "error"
    head = (f"{'target':12s} {'task':14s} {'metric':12s} {'pred':>7s} {'low':>7s} {'high':>7s} "
            f"{'actual':>7s} {err:>7s} {'shift':>7s}  status")
    lines = [head, "-" * len(head)]
    for r in verdict["rows"]:
        note = f" ({r['trust']})" if r.get("trust") == "caution" else ""
        lines.append(f"{r['target']:12s} {r['task']:14s} {r['metric']:12s} "
                     f"{value(r['predicted'])} {value(r['low'])} {value(r['high'])} "
                     f"{value(r['actual'])} {signed(r['error'])} {signed(r['shift'])}  "
                     f"{r.get('status', '')}{note}")
    if "passed" in verdict:
        rule = GateRule(verdict["metric"], verdict["tolerance"], verdict["max_shift"],
                        verdict["strict"])
        bad = sum(r["status"] not in ("ok", "untrusted") for r in verdict["rows"])
        untrusted = sum(r["status"] == "untrusted" for r in verdict["rows"])
        extra = f"; {untrusted} untrusted" if untrusted else ""
        lines.append(f"gate: {'PASS' if verdict['passed'] else 'FAIL'} ({bad} of "
                     f"{len(verdict['rows'])} rows outside tolerance{extra}; "
                     f"{rule.describe()})")
    return "\n".join(lines)

