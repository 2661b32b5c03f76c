"""The gate's verdict written back where a registry user looks: the target's evaluation run,
each prediction run and each law version (tags, metrics, and the first line of the version's
description), so that a finished run says whether its prediction held, not only `gate.json`.

Tags: `gate/verdict` (pass, drift or untrusted), `gate/status` (the row's ok, DRIFT, SHIFT,
MISSING or untrusted), `gate/metric` (acc or loss: the mode), `gate/tolerance`, `gate/target`,
`gate/evaluation` (the gated evaluation run). Metrics: `gate/error` (points or percent) and
`gate/tolerance` where it is a number; the evaluation run has `gate/passed` and, per task,
`gate/<task>/error` with the tag `gate/<task>`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .laws import MODEL_PREFIX
from .rule import UNITS, GateRule
from .store import Store

GATE_LINE = "Gate "  # the description's first line, replaced by the next gating


def row_verdict(row: dict) -> str:
    """pass, drift or untrusted: the gate's vocabulary for one task's row."""
    return {"ok": "pass", "untrusted": "untrusted"}.get(row["status"], "drift")


def target_verdict(rows: Iterable[dict], rule: GateRule) -> str:
    rows = list(rows)
    verdicts = [row_verdict(r) for r in rows]
    if all(v == "untrusted" for v in verdicts):
        return "untrusted"
    failed = "drift" in verdicts or (rule.strict and "untrusted" in verdicts)
    return "drift" if failed else "pass"


def _rule_tags(rule: GateRule, target: str, evaluation: str) -> dict[str, str]:
    tol = "interval" if rule.tolerance == "interval" else \
        f"{rule.tolerance:g} {UNITS[rule.metric]}"
    return {"gate/metric": rule.metric, "gate/tolerance": tol, "gate/target": target,
            "gate/evaluation": evaluation}


def _metrics(values: dict[str, float | None]):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in values.items() if v is not None]


def _tags(values: dict[str, str]):
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in values.items()]


def record_verdict(store: Store, verdict: dict) -> None:
    """Write `verdict` (run_gate's) onto the evaluation, prediction and law records."""
    rule = GateRule(verdict["metric"], verdict["tolerance"], verdict["max_shift"],
                    verdict["strict"])
    tolerance = None if rule.tolerance == "interval" else rule.tolerance
    for target, eval_run in verdict["evaluations"].items():
        rows = [r for r in verdict["rows"] if r["target"] == target]
        base = _rule_tags(rule, target, eval_run)
        overall = target_verdict(rows, rule)
        tags = {**base, "gate/verdict": overall}
        tags.update({f"gate/{r['task']}": row_verdict(r) for r in rows})
        metrics = {"gate/passed": float(overall != "drift"), "gate/tolerance": tolerance}
        metrics.update({f"gate/{r['task']}/error": r["error"] for r in rows})
        store.call("log_batch", eval_run, metrics=_metrics(metrics), tags=_tags(tags))
        for row in rows:
            _record_row(store, row, base, tolerance, rule)


def _record_row(store: Store, row: dict, base: dict[str, str], tolerance: float | None,
                rule: GateRule) -> None:
    tags = {**base, "gate/verdict": row_verdict(row), "gate/status": row["status"]}
    metrics = _metrics({"gate/error": row["error"], "gate/tolerance": tolerance})
    store.call("log_batch", row["prediction_run"], metrics=metrics, tags=_tags(tags))
    name, _, version = row["law"].removeprefix("models:/").partition("/")
    if not name.startswith(MODEL_PREFIX) or not version:
        return
    for key, value in tags.items():
        store.upsert("set_model_version_tag", name, version, key, value)
    mv = store.call("get_model_version", name, version)
    store.call("log_batch", mv.run_id, metrics=metrics)
    rest = [line for line in (mv.description or "").splitlines()
            if not line.startswith(GATE_LINE)]
    store.call("update_model_version", name, version,
               description="\n".join([gate_line(row, rule, base["gate/evaluation"]), *rest]))


def gate_line(row: dict, rule: GateRule, evaluation: str) -> str:
    """One line: the verdict, the error against the tolerance, what was gated."""
    unit = "points" if rule.metric == "acc" else "%"
    error = "no error (a value is missing)" if row["error"] is None else \
        f"error {row['error']:+.2f} {unit}"
    tol = "the prediction interval" if rule.tolerance == "interval" else \
        f"tolerance {rule.tolerance:g} {unit}"
    status = "" if row["status"] in ("ok", "DRIFT", "untrusted") else f" ({row['status']})"
    return (f"{GATE_LINE}{row_verdict(row).upper()}{status}: {row['target']} {row['metric']} "
            f"{error}, {tol} (evaluation run {evaluation})")
