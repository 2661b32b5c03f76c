"""Prediction reports: the dict behind `taskladder predict --json OUT` and the terminal table.

JSON schema ``taskladder.prediction/2`` (all values plain JSON; accuracies and losses are
fractions / bits per byte as measured, errors in accuracy points where named ``*_points``)::

    {
      "schema": "taskladder.prediction/2",
      "method": "paper" | "default",
      "level": 0.9,                           # central interval level of low/high
      "ladder": {"source": str, "format": str, "runs": [str], "data_hash": str},
      "target": {"name": str, "N": float, "D": float, "flops": float},
      "tasks": {
        "<task>": {
          "status": "ok" | "caution" | "unpredictable",   # the accuracy's; laws/trust.py
          "reasons": [str],                   # why the status is not ok (short strings)
          "loss_status": "ok" | "caution" | "unpredictable",   # the loss (step 1) prediction's
          "loss_reasons": [str],
          "notes": [str],                     # ladder settings that could not apply
          "interval": "calibrated" | "bootstrap" | "none",   # ChainedFit.interval_kind
          "acc_metric": "acc_norm",           # what is predicted (BoolQ: "acc")
          "feature": {"task": "arc_easy", "metric": "bpb"},  # the intermediate (step-1) quantity
          "form": str,                        # the form used (default: heaviest weight)
          "predicted": {"acc": f, "low": f, "high": f, "loss": f, "loss_low": f, "loss_high": f,
                        "form_sd": f, "distance": f},   # forms' spread; feature extrapolation
          "params": {"step1": {name: f}, "step2": {name: f}},
          "fit_errors": {"step1": {"mean_abs_rel": f, "max_abs_rel": f, "param_sd": {...}?},
                         "step2": {"rmse": f, "mean_abs": f, "param_sd": {...}?}},
          "flags": {"step1_converged": b, "step1_at_bound": [name], "step2_converged": b,
                    "step2_at_bound": [name], "step1_degenerate": b, "step2_degenerate": b,
                    "degenerate": b},
          "backtest": null | {"chosen": str, "weights": {form: w},
                              "scores": {form: {split: points, "mean": points}},
                              "splits": {split: [held-out run]}},
          "noise": {"acc_sd": f, "source": str},     # evaluation noise of the accuracy
          # only with --actual:
          "actual": {"run": str, "acc": f, "loss": f,
                     "abs_error_points": f, "rel_error": f,        # (pred - actual) / actual
                     "loss_abs_error": f, "loss_rel_error": f}
        }
      },
      # only with --actual:
      "summary": {"mean_abs_error_points": f, "mean_abs_rel_error": f, "n_tasks": int},
      # only where a task's ladder cannot be fitted (too few sizes, runs or checkpoints):
      "unpredictable": {"<task>": str}       # the reason; the other tasks are predicted
    }

`taskladder fit --json OUT` writes ``{"schema": "taskladder.fits/1", "method", "ladder",
"fits": {task: ChainedFit.to_dict()}}``; `ChainedFit.from_dict` reads each fit back.
"""

from __future__ import annotations

import numpy as np

from taskladder.common.facts import LABELS

from .chained import ChainedFit
from .observations import Observations

PREDICTION_SCHEMA = "taskladder.prediction/2"
FITS_SCHEMA = "taskladder.fits/1"


def form_label(fit: ChainedFit) -> str:
    """The feature(s) a prediction rests on: "bpb 0.63 + ce_c4_en 0.37" for weighted forms."""
    if fit.backtest and len(fit.backtest.get("weights", {})) > 1:
        return " + ".join(f"{k} {w:.2f}" for k, w in fit.backtest["weights"].items())
    if fit.backtest:
        return fit.backtest["chosen"]
    s = fit.settings
    return f"{s.feature}, {s.step1_form}, {s.step2_form}"


def actual_values(obs: Observations, fit: ChainedFit, window: int = 5) -> dict | None:
    """The target's measured accuracy and feature loss: its final value (mean of last 5)."""
    out = {}
    pairs = (("acc", fit.task, fit.acc_metric), ("loss", fit.x_task, fit.x_metric))
    for key, task, metric in pairs:
        finals = obs.finals(task, metric, window)
        if not finals.runs:
            if key == "acc":
                return None
            continue
        out[key] = float(finals.y[0])
    return out


def build_report(
    fits: dict[str, ChainedFit],
    target: dict,
    ladder: dict,
    actual: Observations | None = None,
) -> dict:
    """The prediction report for one target (see the module docstring for the schema)."""
    tasks = {}
    first = next(iter(fits.values()))
    for task, fit in fits.items():
        p = {k: float(v) for k, v in fit.predict(target["N"], target["D"]).items()}
        judged = fit.statuses(target["N"], target["D"])
        entry = {
            "status": judged["acc"][0],
            "reasons": judged["acc"][1],
            "loss_status": judged["loss"][0],
            "loss_reasons": judged["loss"][1],
            "notes": list(fit.diagnostics.get("notes", [])),
            "interval": fit.interval_kind,
            "acc_metric": fit.acc_metric,
            "feature": {"task": fit.x_task, "metric": fit.x_metric},
            "form": form_label(fit),
            "predicted": {
                "acc": p["acc"],
                "low": p["acc_low"],
                "high": p["acc_high"],
                "loss": p["loss"],
                "loss_low": p["loss_low"],
                "loss_high": p["loss_high"],
                "form_sd": p["form_sd"],
                "distance": p["distance"],
            },
            "params": {
                "step1": dict(zip(fit.step1.names, fit.step1.params, strict=True)),
                "step2": dict(zip(fit.step2.names, fit.step2.params, strict=True)),
            },
            "fit_errors": {"step1": fit.step1.errors, "step2": fit.step2.errors},
            "flags": fit.flags,
            "backtest": fit.backtest,
            "noise": {
                "acc_sd": fit.diagnostics.get("acc_noise"),
                "source": fit.diagnostics.get("noise_source"),
            },
        }
        if actual is not None:
            act = actual_values(actual, fit)
            if act is not None:
                entry["actual"] = {
                    "run": actual.unique("run")[0],
                    "acc": act["acc"],
                    "abs_error_points": abs(p["acc"] - act["acc"]) * 100,
                    "rel_error": (p["acc"] - act["acc"]) / act["acc"],
                    "covered": p["acc_low"] <= act["acc"] <= p["acc_high"],
                }
                if "loss" in act:
                    entry["actual"].update(
                        loss=act["loss"],
                        loss_abs_error=abs(p["loss"] - act["loss"]),
                        loss_rel_error=(p["loss"] - act["loss"]) / act["loss"],
                    )
        tasks[task] = entry
    report = {
        "schema": PREDICTION_SCHEMA,
        "method": first.method,
        "level": first.settings.level,
        "ladder": ladder,
        "target": target,
        "tasks": tasks,
    }
    with_actual = [t for t in tasks.values() if "actual" in t]
    if with_actual:
        report["summary"] = {
            "mean_abs_error_points": float(
                np.mean([t["actual"]["abs_error_points"] for t in with_actual])
            ),
            "mean_abs_rel_error": float(
                np.mean([abs(t["actual"]["rel_error"]) for t in with_actual])
            ),
            "n_tasks": len(with_actual),
            "coverage": float(np.mean([t["actual"]["covered"] for t in with_actual])),
        }
    return report


def fits_document(fits: dict[str, ChainedFit], ladder: dict) -> dict:
    first = next(iter(fits.values()))
    return {
        "schema": FITS_SCHEMA,
        "method": first.method,
        "ladder": ladder,
        "fits": {t: f.to_dict() for t, f in fits.items()},
    }


def format_prediction_table(report: dict) -> str:
    """A readable table: one row per task, accuracy in points, its status and reasons."""
    t = report["target"]
    pct = round(report["level"] * 100)
    lines = [
        f"target {t['name']}: N = {t['N']:.4g}, D = {t['D']:.4g}   "
        f"method: {report['method']}   interval: {pct}%"
        + _interval_note({e.get("interval") for e in report["tasks"].values()})
    ]
    head = f"{'task':<15}{'pred':>7}{'low':>7}{'high':>7}{'loss':>8}  {'loss status':<14}"
    has_actual = "summary" in report
    if has_actual:
        head += f"{'actual':>8}{'abs err':>8}{'rel err':>9}"
    head += f"  {'acc status':<14}form / reasons"
    lines += [head, "-" * (len(head) + 10)]
    for task, e in report["tasks"].items():
        p = e["predicted"]
        row = (
            f"{LABELS.get(task, task):<15}{p['acc'] * 100:7.2f}{p['low'] * 100:7.2f}"
            f"{p['high'] * 100:7.2f}{p['loss']:8.4f}  {e.get('loss_status', ''):<14}"
        )
        if has_actual:
            a = e.get("actual")
            row += (
                f"{a['acc'] * 100:8.2f}{a['abs_error_points']:8.2f}{a['rel_error'] * 100:8.2f}%"
                if a
                else " " * 25
            )
        reasons = list(e["reasons"])  # the loss's own reasons once, marked as the loss's
        reasons += [f"loss: {r}" for r in e.get("loss_reasons", [])
                    if r not in reasons and f"loss: {r}" not in reasons]
        row += f"  {e['status']:<14}" + "; ".join([e["form"], *reasons])
        lines.append(row)
    for task, why in report.get("unpredictable", {}).items():
        lines.append(f"{LABELS.get(task, task):<15}{'':>29}  {'unpredictable':<14}{why}")
    for task, e in report["tasks"].items():
        lines += [f"note ({LABELS.get(task, task)}): {n}" for n in e.get("notes", [])]
    if has_actual:
        s = report["summary"]
        lines.append(
            f"mean abs error: {s['mean_abs_error_points']:.2f} points "
            f"({s['mean_abs_rel_error'] * 100:.2f}% rel) over {s['n_tasks']} tasks; "
            f"{s['coverage'] * 100:.0f}% of actuals inside the {pct}% interval"
        )
    return "\n".join(lines)


def _interval_note(kinds: set) -> str:
    if "none" in kinds:
        return " (none: the paper's method without a bootstrap gives a point)"
    if "bootstrap" in kinds:
        return " (the parameter bootstrap alone, not calibrated by backtests)"
    return ""


def format_fit_table(fits: dict[str, ChainedFit], unfit: dict[str, str] | None = None) -> str:
    lines = [
        f"{'task':<15}{'step 1 params':<48}{'err1':>7}{'step 2 params':<40}{'rmse2':>7}"
        "  form / flags"
    ]
    for task, why in (unfit or {}).items():
        lines.append(f"{LABELS.get(task, task):<15}unpredictable: {why}")
    for task, f in fits.items():
        p1 = " ".join(f"{n}={v:.4g}" for n, v in zip(f.step1.names, f.step1.params, strict=True))
        p2 = " ".join(f"{n}={v:.4g}" for n, v in zip(f.step2.names, f.step2.params, strict=True))
        flag = "  [DEGENERATE]" if f.flags["degenerate"] else ""
        lines.append(
            f"{LABELS.get(task, task):<15}{p1:<48}{f.step1.errors['mean_abs_rel'] * 100:6.2f}% "
            f"{p2:<40}{f.step2.errors['rmse'] * 100:6.2f}  {form_label(f)}{flag}"
        )
    return "\n".join(lines)
