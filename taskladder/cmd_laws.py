"""`taskladder fit` and `taskladder predict`: the two-step task scaling laws on a ladder.

Each handler validates everything first, then calls the one fit-and-predict path
(taskladder.predict, shared with the pipeline), then prints a table and writes files
atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskladder import flags
from taskladder.cmd_registry import add_register_flags, check_registry_store, registry_store
from taskladder.errors import UsageError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    fit = subparsers.add_parser(
        "fit", help="fit the chained task scaling laws on a ladder",
        description="Fit step 1 and step 2 per task and print their parameters.")
    _common(fit)
    flags.add(fit, "--json", help="write the fits (ChainedFit.to_dict per task) to PATH "
              "(- = stdout)")
    add_register_flags(fit)
    fit.set_defaults(func=_fit)

    pred = subparsers.add_parser(
        "predict", help="predict a target model's accuracy from a ladder",
        description="Fit the laws on a ladder and predict each task's accuracy (with an "
        "interval) for a target model of N parameters and D tokens.")
    _common(pred)
    add_target_flags(pred)
    flags.add(pred, "--json", help="write the prediction report (schema in "
              "taskladder.laws.report) to PATH (- = stdout)")
    add_register_flags(pred)
    pred.set_defaults(func=_predict)


def add_ladder_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--ladder, --format, --runs: the ladder's evaluations and which runs form it."""
    flags.add(p, "--ladder", required=required,
              help="the ladder's evaluations: an OLMo-ladder CSV folder, lm-eval results, or a "
              "table file")
    flags.add(p, "--format", choices=flags.FORMATS)
    flags.add(p, "--runs", help="comma-separated run globs forming the ladder (olmo-csv default: "
              "the paper's *-1xC,*-2xC,*-5xC,*-10xC; otherwise all runs)")


def add_target_flags(p: argparse.ArgumentParser) -> None:
    """The target: a name, a size, and its real evaluation (--actual*)."""
    flags.add(p, "--target", help="a named target: 7B-4T or 13B-5T")
    flags.add(p, "--target-n", type=float)
    flags.add(p, "--target-d", type=float)
    flags.add(p, "--target-flops", type=float)
    flags.add(p, "--actual", help="the target's real evaluation (any ladder format)")
    flags.add(p, "--actual-format", choices=flags.FORMATS)
    flags.add(p, "--actual-run")


def _common(p: argparse.ArgumentParser) -> None:
    add_ladder_flags(p)
    flags.add(p, "--tasks", help="comma-separated task keys, 'all' or 'paper' (default: the "
              "paper's 8 the ladder has, else all)")
    p.add_argument("--method", choices=("paper", "default"), default="default")
    p.add_argument("--bootstrap", type=int, metavar="B",
                   help="bootstrap draws for intervals (paper: 0, default: 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", metavar="DIR", help="write the paper's figures (PNG) here")
    add_law_flags(p)


def add_law_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared with `taskladder analyze`: the ladder's reading and the laws' form."""
    p.add_argument("--feature", metavar="F",
                   help="intermediate feature: auto (default), bpb, task_ce or ce_<set> "
                   "(an LM loss)")
    p.add_argument("--step1-form", choices=("auto", "nd", "compute"),
                   help="step 1: A/N^a + B/D^b + E (nd), A/C^a + E (compute) or auto")
    p.add_argument("--schedule", choices=("cosine", "constant"),
                   help="the runs' LR schedule: cosine (default; any decay: step 1 fits one "
                   "point per run) or constant (constant / WSD before decay: every checkpoint)")
    p.add_argument("--level", type=float, metavar="P", help="interval level (default 0.9)")
    p.add_argument("--chance", metavar="TASK=P,...", help="chance accuracy of tasks the facts lack")
    p.add_argument("--sizes", metavar="NAME=N,...",
                   help="parameters of OLMo-ladder sizes the facts lack "
                   "(or sizes.json in --ladder)")


def load_inputs(args: argparse.Namespace):
    """Read the ladder and check tasks and method (raises on bad input, writes nothing)."""
    from taskladder.common.facts import PAPER_LADDER
    from taskladder.laws.readers import detect_format, read_ladder, sizes_of
    from taskladder.laws.tasks import chance_levels, select_tasks
    from taskladder.predict import law_inputs

    tasks = select_tasks(flags.names(args.tasks))  # the names are checked before any reading
    path = Path(args.ladder)
    if not path.exists():
        raise UsageError(f"--ladder: {args.ladder!r} does not exist")
    chance = chance_levels(flags.pairs(args.chance, "--chance"))
    fmt = args.format or detect_format(path)
    runs = flags.names(args.runs) or (PAPER_LADDER if fmt == "olmo-csv" else None)
    obs = read_ladder(path, fmt, sizes=sizes_of(flags.pairs(args.sizes, "--sizes")), runs=runs)
    if args.tasks is None or flags.names(args.tasks) == ["all"]:  # resolved on the ladder
        tasks = select_tasks(flags.names(args.tasks), obs)
    settings = {"seed": args.seed}
    if args.bootstrap is not None:
        settings["n_bootstrap"] = args.bootstrap
    given = {"feature": args.feature, "step1_form": args.step1_form, "level": args.level,
             "schedule": args.schedule}
    settings.update({k: v for k, v in given.items() if v is not None})
    return law_inputs(obs, path, fmt, tasks, args.method, chance=chance, **settings)


def _fit(args: argparse.Namespace) -> int:
    from taskladder.laws.report import format_fit_table
    from taskladder.predict import fit_and_predict

    check_registry_store(args)  # --register: checked before any work, nothing created yet
    inputs = load_inputs(args)
    out = fit_and_predict(inputs, plots_dir=args.plots, store=registry_store(args),
                          alias=args.alias)
    unfit = out.document.get("unpredictable")
    print(format_fit_table(out.fits, unfit), file=flags.table_stream(args.json))
    for task, uri in out.laws.items():
        print(f"law of {task}: {uri}", file=sys.stderr)
    _write_outputs(args, out)
    return 0


def resolve_target(args: argparse.Namespace, ladder_obs, actual_obs) -> dict:
    """The target of --target / --target-n/-d/-flops / --actual, checked against the ladder."""
    from taskladder.predict import check_extrapolation
    from taskladder.predict import resolve_target as target_of

    target = target_of(args.target, args.target_n, args.target_d, args.target_flops, actual_obs)
    check_extrapolation(target, float(ladder_obs.N.max()), float(ladder_obs.D.max()))
    return target


def read_actual(args: argparse.Namespace):
    """The target's real evaluation (--actual), narrowed to the target's run; None without."""
    from taskladder.common.target import target_run
    from taskladder.laws.readers import read_ladder, sizes_of

    if not args.actual:
        return None
    sizes = sizes_of(flags.pairs(args.sizes, "--sizes"))
    obs = read_ladder(args.actual, args.actual_format, sizes=sizes)
    return obs.where(run=target_run(obs.unique("run"), args.actual_run, args.actual))


def _predict(args: argparse.Namespace) -> int:
    from taskladder.cmd_registry import print_predictions
    from taskladder.laws.report import format_prediction_table
    from taskladder.predict import fit_and_predict
    from taskladder.registry.rule import DEFAULTS

    check_registry_store(args)  # --register: checked before any work, nothing created yet
    inputs = load_inputs(args)
    actual = read_actual(args)
    target = resolve_target(args, inputs.obs, actual)
    out = fit_and_predict(inputs, target, actual, plots_dir=args.plots,
                          store=registry_store(args), alias=args.alias)
    print(format_prediction_table(out.document), file=flags.table_stream(args.json))
    if out.predictions:
        print_predictions(out.predictions, DEFAULTS["acc"][1], file=sys.stderr)
    _write_outputs(args, out)
    return 0


def _write_outputs(args: argparse.Namespace, out) -> None:
    if out.plots:
        print(f"wrote {len(out.plots)} plots to {args.plots}", file=sys.stderr)
    flags.write_json_result(args.json, out.document, indent=1, default=None, allow_nan=False)
