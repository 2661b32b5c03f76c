"""`taskladder fit` and `taskladder predict`: the two-step task scaling laws on a ladder.

Each handler validates everything first, then builds its document (`fit_command`,
`predict_command` return fits + report without printing or writing), then prints a table
and writes files atomically. A registry hook only needs the built objects.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from taskladder.cmd_registry import add_register_flags, register_laws, registry_store
from taskladder.errors import UsageError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    fit = subparsers.add_parser("fit", help="fit the chained task scaling laws on a ladder",
                                description="Fit step 1 and step 2 per task and print their parameters.")
    _common(fit)
    fit.add_argument("--json", metavar="OUT", help="write the fits (ChainedFit.to_dict per task) here")
    add_register_flags(fit)
    fit.set_defaults(func=_fit)

    pred = subparsers.add_parser("predict", help="predict a target model's accuracy from a ladder",
                                 description="Fit the laws on a ladder and predict each task's accuracy "
                                 "(with an interval) for a target model of N parameters and D tokens.")
    _common(pred)
    pred.add_argument("--target", metavar="NAME", help="a named target: 7B-4T or 13B-5T")
    pred.add_argument("--target-n", type=float, metavar="N", help="target parameters (non-embedding)")
    pred.add_argument("--target-d", type=float, metavar="D", help="target training tokens")
    pred.add_argument("--target-flops", type=float, metavar="C",
                      help="target training compute; gives D = C / (6 N) when --target-d is absent")
    pred.add_argument("--actual", metavar="PATH", help="the target's real evaluation (any ladder format)")
    pred.add_argument("--actual-format", choices=("olmo-csv", "lm-eval", "table"))
    pred.add_argument("--actual-run", metavar="RUN", help="which run of --actual is the target")
    pred.add_argument("--json", metavar="OUT", help="write the prediction report (schema in taskladder.laws.report)")
    add_register_flags(pred)
    pred.set_defaults(func=_predict)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ladder", required=True, metavar="PATH",
                   help="ladder evaluations: an OLMo-ladder CSV folder, lm-eval results, or a table file")
    p.add_argument("--format", choices=("olmo-csv", "lm-eval", "table"), help="ladder format (default: detected)")
    p.add_argument("--runs", metavar="GLOBS",
                   help="comma-separated run globs forming the ladder (olmo-csv default: the paper's "
                   "*-1xC,*-2xC,*-5xC,*-10xC; otherwise all runs)")
    p.add_argument("--tasks", metavar="LIST", help="comma-separated task keys, or 'all' (default: the paper's 8)")
    p.add_argument("--method", choices=("paper", "default"), default="default")
    p.add_argument("--bootstrap", type=int, metavar="B",
                   help="bootstrap draws for intervals (paper: 0, default: 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", metavar="DIR", help="write the paper's figures (PNG) here")
    add_law_flags(p)


def add_law_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared with `taskladder analyze`: the ladder's reading and the laws' form."""
    p.add_argument("--feature", metavar="F",
                   help="intermediate feature: auto (default), bpb, task_ce or ce_<set> (an LM loss)")
    p.add_argument("--step1-form", choices=("auto", "nd", "compute"),
                   help="step 1: A/N^a + B/D^b + E (nd), A/C^a + E (compute) or auto")
    p.add_argument("--level", type=float, metavar="P", help="interval level (default 0.9)")
    p.add_argument("--chance", metavar="TASK=P,...", help="chance accuracy of tasks the facts lack")
    p.add_argument("--sizes", metavar="NAME=N,...",
                   help="parameters of OLMo-ladder sizes the facts lack (or sizes.json in --ladder)")


@dataclass
class LawInputs:
    obs: object
    ladder: dict
    tasks: list[str]
    fitter: object


def load_inputs(args: argparse.Namespace) -> LawInputs:
    """Read and validate the ladder, tasks and method (raises on bad input, writes nothing)."""
    from taskladder.common.facts import PAPER_LADDER
    from taskladder.laws.chained import ChainedFitter
    from taskladder.laws.readers import detect_format, parse_sizes, read_ladder, select_runs
    from taskladder.laws.tasks import parse_chance, parse_tasks

    tasks = parse_tasks(args.tasks)
    path = Path(args.ladder)
    if not path.exists():
        raise UsageError(f"--ladder: {args.ladder!r} does not exist")
    chance = parse_chance(args.chance)
    fmt = args.format or detect_format(path)
    obs = read_ladder(path, fmt, sizes=parse_sizes(args.sizes))
    runs = args.runs or (",".join(PAPER_LADDER) if fmt == "olmo-csv" else "*")
    obs = select_runs(obs, runs, where="--runs")
    overrides = {"seed": args.seed}
    if args.bootstrap is not None:
        if args.bootstrap < 0:
            raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
        overrides["n_bootstrap"] = args.bootstrap
    flags = {"feature": args.feature, "step1_form": args.step1_form, "level": args.level}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    fitter = ChainedFitter(args.method, chance=chance, **overrides)
    for task in tasks:
        if len(obs.where(task=task)) == 0:
            raise UsageError(f"--tasks: task {task!r} has no observations in {args.ladder}")
    ladder = {"source": str(path), "format": fmt, "runs": obs.unique("run"), "data_hash": obs.content_hash()}
    return LawInputs(obs, ladder, tasks, fitter)


def fit_all(inputs: LawInputs) -> dict:
    return {task: inputs.fitter.fit(inputs.obs, task) for task in inputs.tasks}


def _ensure_writable(*paths: str | None) -> None:
    for p in paths:
        if p and not Path(p).resolve().parent.is_dir():
            raise UsageError(f"cannot write {p!r}: its folder does not exist")


def fit_command(args: argparse.Namespace) -> tuple[LawInputs, dict, dict]:
    """Inputs, fits and the fits document of `taskladder fit` (nothing printed or written)."""
    from taskladder.laws.report import fits_document

    _ensure_writable(args.json)
    inputs = load_inputs(args)
    fits = fit_all(inputs)
    return inputs, fits, fits_document(fits, inputs.ladder)


def _fit(args: argparse.Namespace) -> int:
    from taskladder.laws.report import format_fit_table

    store = registry_store(args)  # --register: the store is checked before any work
    inputs, fits, doc = fit_command(args)
    print(format_fit_table(fits))
    plots = _write_outputs(args, doc, inputs, fits, None)
    if store is not None:
        register_laws(args, store, inputs, fits, None, plots)
    return 0


def resolve_target(args: argparse.Namespace, ladder_obs, actual_obs) -> dict:
    """The target (name, N, D, flops) from --target / --target-n/-d/-flops / the actual run."""
    import numpy as np

    from taskladder.common.facts import TARGETS

    name, n, d = args.target, args.target_n, args.target_d
    if name:
        if name not in TARGETS:
            raise UsageError(f"--target: unknown target {name!r} (known: {', '.join(TARGETS)})")
        n0, d0 = TARGETS[name]
        n, d = n or n0, d or d0
    if actual_obs is not None:
        n = n or float(actual_obs.N.max())
        d = d or float(actual_obs.D.max())
    for flag, v in (("--target-n", n), ("--target-d", d), ("--target-flops", args.target_flops)):
        if v is not None and (not np.isfinite(v) or v <= 0):
            raise UsageError(f"{flag} must be a positive number, got {v!r}")
    if d is None and args.target_flops and n:
        d = args.target_flops / (6.0 * n)
    if n is None or d is None:
        raise UsageError("predict: give the target as --target NAME, --target-n and --target-d (or --target-flops), or --actual")
    N_max, D_max = float(ladder_obs.N.max()), float(ladder_obs.D.max())
    if n <= N_max and d <= D_max:  # extrapolating in N or in D is what the laws are for
        raise UsageError(f"target N={n:.4g}, D={d:.4g} is smaller than the ladder (largest N={N_max:.4g}, D={D_max:.4g}): nothing to predict")
    return {"name": name or f"N={n:.3g},D={d:.3g}", "N": float(n), "D": float(d),
            "flops": float(args.target_flops or 6.0 * n * d)}


def _read_actual(args: argparse.Namespace):
    from taskladder.common.facts import PAPER_TARGET_RUN
    from taskladder.laws.readers import read_ladder

    if not args.actual:
        return None
    from taskladder.laws.readers import parse_sizes

    obs = read_ladder(args.actual, args.actual_format, sizes=parse_sizes(args.sizes))
    runs = obs.unique("run")
    run = args.actual_run or (runs[0] if len(runs) == 1 else PAPER_TARGET_RUN if PAPER_TARGET_RUN in runs else None)
    if run is None or run not in runs:
        raise UsageError(f"--actual: {args.actual} holds runs {', '.join(runs[:6])}{'...' if len(runs) > 6 else ''}; pick one with --actual-run")
    return obs.where(run=run)


def predict_command(args: argparse.Namespace) -> tuple[LawInputs, dict, dict]:
    """Inputs, fits and the prediction report of `taskladder predict` (nothing printed or written)."""
    from taskladder.laws.report import build_report

    _ensure_writable(args.json)
    inputs = load_inputs(args)
    actual = _read_actual(args)
    target = resolve_target(args, inputs.obs, actual)
    fits = fit_all(inputs)
    return inputs, fits, build_report(fits, target, inputs.ladder, actual)


def _predict(args: argparse.Namespace) -> int:
    from taskladder.laws.report import format_prediction_table

    store = registry_store(args)  # --register: the store is checked before any work
    inputs, fits, report = predict_command(args)
    print(format_prediction_table(report))
    plots = _write_outputs(args, report, inputs, fits, report["target"])
    if store is not None:
        register_laws(args, store, inputs, fits, report, plots)
    return 0


def _write_outputs(args, doc: dict, inputs: LawInputs, fits: dict, target: dict | None) -> list[Path]:
    from taskladder.common.io import write_json

    paths: list[Path] = []
    if args.plots:
        from taskladder.laws.plots import write_plots

        report = doc if target else None
        paths = write_plots(args.plots, fits, inputs.obs, target, report)
        print(f"wrote {len(paths)} plots to {args.plots}", file=sys.stderr)
    if args.json:
        write_json(args.json, doc, indent=1, allow_nan=False)
        print(f"wrote {args.json}", file=sys.stderr)
    return paths
