"""Fit -> report -> plots -> register: the one path behind `taskladder fit`, `taskladder predict`
and the pipeline's fit stage, with one set of checks.

Every check runs before the first fit, plot or registry write (the tasks are fittable on the
ladder, the target is a real extrapolation), so bad input leaves nothing behind. Nothing here
prints or writes JSON: callers do, after `fit_and_predict` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from taskladder.common.errors import FieldError, InputError
from taskladder.common.facts import TARGETS, train_flops
from taskladder.errors import UsageError


@dataclass(frozen=True)
class LawInputs:
    """A validated ladder ready to fit: observations, where they came from, tasks, fitter."""

    obs: object  # taskladder.laws.observations.Observations
    ladder: dict  # the report's "ladder": source, format, runs, data_hash
    tasks: tuple[str, ...]
    fitter: object  # taskladder.laws.fitter.ChainedFitter
    # task -> why its ladder cannot be fitted (the InputError, its message the reason)
    unfit: dict[str, InputError] = field(default_factory=dict)


@dataclass(frozen=True)
class LawOutputs:
    """What one fit-and-predict produced; `document` is the report (or fits document)."""

    fits: dict
    document: dict
    plots: tuple[Path, ...] = ()
    laws: dict[str, str] = field(default_factory=dict)  # task -> models:/ URI when registered
    predictions: dict = field(default_factory=dict)  # task -> registry Prediction


def law_inputs(obs, source: str | Path, fmt: str, tasks: list[str], method: str,
               **settings) -> LawInputs:
    """Check that every task can be fitted on `obs` (observations, sizes, runs, a known chance
    level) and build the fitter; `settings` override the method's (seed, n_bootstrap). A task
    the ladder lacks (no rows, no accuracy) is an error naming the field ``tasks`` (the CLI's
    --tasks, the spec's fit.tasks) and the ladder's source; a task whose ladder cannot support a
    fit is unpredictable, the others are still fitted (`_some_fittable`)."""
    from taskladder.laws.fitter import ChainedFitter
    from taskladder.laws.resolve import check_ladder
    from taskladder.laws.tasks import chance_level

    fitter = ChainedFitter(method, **settings)  # bad settings fail before the ladder is read
    unfit = {}
    for task in tasks:
        try:
            check_ladder(obs, task)
        except FieldError as exc:
            raise FieldError(exc.field, f"{exc.detail} ({source})") from None
        except InputError as exc:  # ShapeError: this task is unpredictable
            unfit[task] = exc
            continue
        try:
            chance_level(task, obs.where(task=task), fitter.chance)
        except FieldError as exc:  # an unknown chance level: this task alone
            unfit[task] = exc
    _some_fittable(tasks, unfit, source)
    ladder = {"source": str(source), "format": fmt, "runs": obs.unique("run"),
              "data_hash": obs.content_hash()}
    fittable = tuple(t for t in tasks if t not in unfit)
    return LawInputs(obs, ladder, fittable, fitter, unfit)


def _some_fittable(tasks, unfit: dict[str, InputError], source) -> None:
    """Bad input where no task can be fitted: the first error that names a field the user can
    set (an unknown chance level, a feature the ladder lacks), else every task's shape reason
    under ``tasks``."""
    from taskladder.laws.observations import ShapeError

    if not unfit or len(unfit) < len(tasks):
        return
    named = [e for e in unfit.values() if not isinstance(e, ShapeError)]
    if named and isinstance(named[0], FieldError):
        raise FieldError(named[0].field, f"{named[0].detail} ({source})")
    reasons = dict.fromkeys(str(e) for e in unfit.values())
    raise FieldError("tasks", f"{'; '.join(reasons)} ({source})")


def resolve_target(name: str | None = None, n: float | None = None, d: float | None = None,
                   flops: float | None = None, actual=None) -> dict:
    """The target {name, N, D, flops}: a named target, explicit N/D (or compute), or the size
    of its real evaluation (`actual` observations)."""
    if name:
        if name not in TARGETS:
            raise UsageError(f"--target: unknown target {name!r} (known: {', '.join(TARGETS)})")
        n0, d0 = TARGETS[name]
        n, d = n or n0, d or d0
    if actual is not None:
        n = n or float(actual.N.max())
        d = d or float(actual.D.max())
    for flag, v in (("--target-n", n), ("--target-d", d), ("--target-flops", flops)):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise UsageError(f"{flag} must be a positive number, got {v!r}")
    if d is None and flops and n:
        d = flops / train_flops(n, 1.0)
    if n is None or d is None:
        raise UsageError("predict: give the target as --target NAME, --target-n and --target-d "
                         "(or --target-flops), or --actual")
    if not math.isfinite(6.0 * n * d):
        raise UsageError(f"--target-n {n:g} and --target-d {d:g}: the compute 6ND overflows "
                         "(not a model anyone can train)")
    return {"name": name or f"N={n:.3g},D={d:.3g}", "N": float(n), "D": float(d),
            "flops": float(flops or train_flops(n, d))}


def check_extrapolation(target: dict, n_max: float, d_max: float) -> None:
    """A target inside the ladder (largest N and D) on both axes has nothing to predict; beyond
    it in N or in D is an extrapolation, which is what the laws are for."""
    n, d = target["N"], target["D"]
    if n <= n_max and d <= d_max:
        raise UsageError(f"target {target['name']}: N={n:.4g}, D={d:.4g} is smaller than the "
                         f"ladder (largest N={n_max:.4g}, D={d_max:.4g}): nothing to predict")


def fit_and_predict(inputs: LawInputs, target: dict | None = None, actual=None, *,
                    plots_dir: str | Path | None = None, store=None, alias: str | None = "current",
                    ladder_name: str | None = None) -> LawOutputs:
    """Fit every task; with a target, build the prediction report (carrying the target's real
    evaluation when `actual` is given); write the plots; register laws (and the prediction)
    in `store` when one is given."""
    from taskladder.laws.report import build_report, fits_document

    if target is not None:
        check_extrapolation(target, float(inputs.obs.N.max()), float(inputs.obs.D.max()))
    fits, unfit = {}, dict(inputs.unfit)
    for task in inputs.tasks:
        try:
            fits[task] = inputs.fitter.fit(inputs.obs, task)
        except InputError as exc:  # what this task's ladder lacks: it alone is unpredictable
            unfit[task] = exc
    _some_fittable([*fits, *unfit], unfit, inputs.ladder["source"])
    if target is None:
        doc = fits_document(fits, inputs.ladder)
    else:
        doc = build_report(fits, target, inputs.ladder, actual)
    if unfit:  # tasks no fit could be made for: unpredictable, with the reason
        doc = {**doc, "unpredictable": {t: str(e) for t, e in unfit.items()}}
    plots: list[Path] = []
    if plots_dir is not None:
        from taskladder.laws.plots import write_plots

        plots = write_plots(plots_dir, fits, inputs.obs, target, doc if target else None)
    laws, preds = {}, {}
    if store is not None:
        if target is None:
            from taskladder.registry.laws import register_fit

            versions = register_fit(fits, store=store, observations=inputs.obs,
                                    ladder=ladder_name, plots=plots, alias=alias)
            laws = {t: v.uri for t, v in versions.items()}
        else:
            from taskladder.registry.predictions import register_report

            preds = register_report(doc, fits, observations=inputs.obs, ladder=ladder_name,
                                    plots=plots, alias=alias, store=store)
            laws = {t: p.law_uri for t, p in preds.items()}
        doc = {**doc, "laws": laws}
    if plots:
        doc = {**doc, "plots": [str(p) for p in plots]}
    return LawOutputs(fits, doc, tuple(plots), laws, preds)


def redraw_with_actual(fits_path: str | Path, report_path: str | Path, obs, actual,
                       plots_dir: str | Path) -> list[Path]:
    """The figures again, now with the target's measured values (`actual`: its evaluation's
    observations): a trained target is measured after the prediction was drawn."""
    import json

    from taskladder.common.target import target_run
    from taskladder.laws.chained import ChainedFit
    from taskladder.laws.plots import write_plots
    from taskladder.laws.report import build_report

    fits = {t: ChainedFit.from_dict(d)
            for t, d in json.loads(Path(fits_path).read_text())["fits"].items()}
    predicted = json.loads(Path(report_path).read_text())
    actual = actual.where(run=target_run(actual.unique("run"), None, "the target's evaluation"))
    report = build_report(fits, predicted["target"], predicted["ladder"], actual)
    return write_plots(plots_dir, fits, obs, predicted["target"], report)
