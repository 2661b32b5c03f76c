"""The end of `taskladder run`: the prediction table, the gate, and a plain-language verdict.

The verdict says what was predicted (the target's task loss, with its interval), how close it
came to the measured value and how that compares with the measurement's own noise (lm-eval's
standard error over the scored questions), and which accuracy predictions are untrusted (the
law engine's per-task status and reasons; a degenerate fit at least).
"""

from __future__ import annotations

from taskladder.common.facts import LABELS
from taskladder.outputs import Gated, Predicted, TargetScored
from taskladder.pipeline import RunContext, StageReport


def measured(obs, task: str, metric: str) -> tuple[float, float | None] | None:
    """(value, standard error or None) of `task`'s `metric` at the last checkpoint of the
    target's observation table (lm-eval's standard error is the metric `<metric>_stderr`)."""
    from taskladder.laws.readers import final_values

    if not len(obs.where(task=task, metric=metric)):
        return None
    value = next(iter(final_values(obs, task, metric, window=1).values()))
    if not len(obs.where(task=task, metric=f"{metric}_stderr")):
        return value, None
    return value, next(iter(final_values(obs, task, f"{metric}_stderr", window=1).values()))


def _status(entry: dict) -> tuple[str, list[str]]:
    """The accuracy prediction's status: the law engine's, else from the fit's flags."""
    if "status" in entry:
        return entry["status"], list(entry.get("reasons", []))
    if entry["flags"]["degenerate"]:
        return "untrusted", ["degenerate step-2 fit"]
    return "ok", []


def _actuals(ctx: RunContext, task: str, e: dict):
    """(loss, acc) the target measured, each (value, standard error or None) or None."""
    target = ctx.found(TargetScored)
    if target is not None:
        obs = target.observations()
        return (measured(obs, e["feature"]["task"], e["feature"]["metric"]),
                measured(obs, task, e["acc_metric"]))
    a = e.get("actual")
    if a is None:
        return None, None
    return ((a["loss"], None) if "loss" in a else None), (a["acc"], None)


def _loss_words(p: dict, loss) -> str:
    span = (f"[{p['loss_low']:.3f}, {p['loss_high']:.3f}]" if p["loss_high"] > p["loss_low"]
            else "(no interval)")
    words = f"task loss predicted {p['loss']:.3f} bpb {span}"
    if loss is None:
        return words
    value, se = loss
    off = 100 * (p["loss"] - value) / value
    noise = f" (noise {100 * se / value:.1f}%)" if se else ""
    where = ""
    if p["loss_high"] > p["loss_low"]:
        inside = p["loss_low"] <= value <= p["loss_high"]
        where = f", {'inside' if inside else 'outside'} the interval"
    return (f"{words}, measured {value:.3f}{noise}: "
            f"{abs(off):.1f}% {'high' if off > 0 else 'low'}{where}")


def verdict_lines(ctx: RunContext) -> list[str]:
    """Per task: the task loss predicted vs measured, the accuracy and whether to trust it;
    then a few sentences for the whole run."""
    report = ctx.output(Predicted).document()
    gated = ctx.found(Gated)
    rows = {r["task"]: r for r in gated.document()["rows"]} if gated is not None else {}
    lines = [f"Verdict for {report['target']['name']}:"]
    errors, noises, inside, untrusted = {}, [], 0, []
    for task, e in report["tasks"].items():
        p, label = e["predicted"], LABELS.get(task, task)
        loss, acc = _actuals(ctx, task, e)
        if loss is not None:
            errors[label] = abs(p["loss"] - loss[0]) / loss[0]
            noises += [loss[1] / loss[0]] if loss[1] else []
            inside += p["loss_low"] <= loss[0] <= p["loss_high"] and p["loss_high"] > p["loss_low"]
        gate = f"; gate {rows[task]['status']}" if task in rows else ""
        loss_gate, acc_gate = (gate, "") if ctx.spec.gate.metric == "loss" else ("", gate)
        loss_status, loss_why = e.get("loss_status", "ok"), "; ".join(e.get("loss_reasons", []))
        loss_trust = "" if loss_status == "ok" else \
            f" ({loss_status}{': ' + loss_why if loss_why else ''})"
        lines.append(f"  {label}: {_loss_words(p, loss)}{loss_trust}{loss_gate}.")
        status, reasons = _status(e)
        words = f"accuracy predicted {100 * p['acc']:.1f}%"
        if acc is not None:
            words += f", measured {100 * acc[0]:.1f}%"
        if status != "ok":
            untrusted.append(label)
        why = "; ".join(reasons)
        trust = "trusted" if status == "ok" else f"UNTRUSTED ({status}{': ' + why if why else ''})"
        lines.append(f"  {' ' * len(label)}  {words}: {trust}{acc_gate}.")
    summary = []
    if errors:
        worst, mean = max(errors, key=errors.get), 100 * sum(errors.values()) / len(errors)
        noise = f", against measurement noise of at most {100 * max(noises):.1f}%" if noises else ""
        summary.append(f"the predicted task loss was off by {mean:.1f}% on average "
                       f"(worst {100 * errors[worst]:.1f}%, {worst}){noise}; "
                       f"{inside} of {len(errors)} measured values lie inside the predicted "
                       f"intervals.")
    if gated is not None:
        skipped = sum(r["status"] == "untrusted" for r in rows.values())
        note = f" ({skipped} of {len(rows)} rows untrusted, so not judged)" if skipped else ""
        summary.append(f"The drift gate ({ctx.spec.gate.describe()}) "
                       f"{'passed' if gated.passed else 'FAILED'}{note}.")
    summary.append(f"Accuracy predictions untrusted: {', '.join(untrusted)}." if untrusted
                   else "Every accuracy prediction is trusted.")
    return lines + ["In short: " + " ".join(summary)]


def final_lines(ctx: RunContext, reports: list[StageReport]) -> list[str]:
    """The closing report: prediction table, gate table, verdict, plots, stages, where to look."""
    from taskladder.laws.report import format_prediction_table

    predicted = ctx.output(Predicted)
    report = predicted.document()
    lines = ["", format_prediction_table(report)]
    lines += [f"  law of {task}: {uri}" for task, uri in predicted.laws.items()]
    gated = ctx.found(Gated)
    if gated is not None:
        from taskladder.registry.gate import format_table

        lines += ["", f"Drift gate for {ctx.spec.target_name} ({ctx.spec.gate.describe()}):",
                  format_table(gated.document())]
    lines += ["", *verdict_lines(ctx), "", f"Plots: {ctx.out / 'plots'}"]
    lines += [f"  {p}" for p in predicted.plots]
    lines.append("Stages:")
    lines += [f"  {r.name:12s} {'ran' if r.ran else 'skipped':8s} {r.seconds:7.1f} s  {r.why}"
              for r in reports]
    lines.append(f"Results: {ctx.out}")
    lines.append(f"Browse them: taskladder ui --tracking-uri {ctx.tracking_uri}")
    return lines


def exit_code(ctx: RunContext) -> int:
    """0, or 1 when the spec's gate found drift (so a CI job can run the pipeline directly)."""
    gated = ctx.found(Gated)
    return 1 if gated is not None and not gated.passed else 0


def outcome(ctx: RunContext, reports: list[StageReport]) -> dict:
    """`taskladder run --json`: the stages, the prediction report, the gate and the exit code."""
    gated = ctx.found(Gated)
    return {
        "spec": ctx.spec.name, "output": str(ctx.out), "tracking_uri": ctx.tracking_uri,
        "stages": [{"name": r.name, "ran": r.ran, "seconds": r.seconds, "why": r.why}
                   for r in reports],
        "prediction": ctx.output(Predicted).document(),
        "gate": gated.document() if gated is not None else None,
        "exit_code": exit_code(ctx),
    }
