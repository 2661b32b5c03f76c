"""Registry verbs: `register` (ladder, fit, prediction, alias), `check-target`, `gate`.

The store is `--tracking-uri`, else $TASKLADDER_TRACKING_URI / $MLFLOW_TRACKING_URI, else
sqlite:///mlflow.db in the working directory. `gate` exits 0 (every task within tolerance),
1 (drift, a moved prediction, or with --strict an untrusted task) or 2 (usage error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from taskladder import flags
from taskladder.errors import UsageError


def add_parsers(sub) -> None:
    reg = sub.add_parser("register", help="version ladder results, fitted laws and predictions "
                                          "in MLflow")
    kinds = reg.add_subparsers(dest="kind")
    _ladder(kinds)
    _fit(kinds)
    _prediction(kinds)
    _alias(kinds)
    reg.set_defaults(func=lambda a: _usage(reg))

    chk = sub.add_parser("check-target", help="record a real evaluation of the target and "
                                              "compare it with the registered prediction")
    _uri(chk)
    flags.add(chk, "--target", required=True, help="target name, as registered with the "
              "prediction")
    _actual(chk)
    flags.add(chk, "--tasks", help="comma-separated tasks to check (default: every predicted "
              "task)")
    _rule(chk)
    flags.add(chk, "--json", help="also write the comparison as JSON to PATH (- = stdout)")
    chk.set_defaults(func=_check_target)

    gate = sub.add_parser("gate", help="exit 0 if every task of the target(s) is within "
                                       "tolerance, 1 on drift, 2 on usage errors")
    _uri(gate)
    flags.add(gate, "--target", action="append", help="target name (repeatable; default: "
              "every target with a recorded evaluation)")
    _actual(gate, help="record this evaluation first (as check-target) and gate it")
    _rule(gate)
    flags.add(gate, "--max-shift", default=None, help="fail when a re-fit moved a registered "
              "prediction by more than this (acc: points, default 2; loss: e.g. 2%%)")
    gate.add_argument("--no-shift-check", action="store_true", help="do not check moved "
                      "predictions")
    gate.add_argument("--strict", action="store_true", help="an untrusted row (a task the law "
                      "engine marked unpredictable) fails the gate")
    gate.add_argument("--predictions-only", action="store_true", help="check only moved "
                      "predictions (before the target has been evaluated)")
    flags.add(gate, "--json", help="also write the verdict as JSON to PATH (- = stdout)")
    traj = gate.add_argument_group("every checkpoint against the trajectory band (with --ladder; "
                                   "docs/trajectory.md)")
    flags.add(traj, "--ladder", help="the ladder whose trajectory laws judge each checkpoint of "
              "--actual (no registry needed)")
    flags.add(traj, "--runs", help="runs of --ladder (OLMo CSVs: the paper's by default)")
    flags.add(traj, "--tasks", help="tasks to judge (default: the paper's 8 the target has)")
    flags.add(traj, "--schedule")
    flags.add(traj, "--target-d", type=float, help="the target's planned total tokens")
    flags.add(traj, "--patience", help="drifting checkpoints in a row before failing "
              "(default 3)")
    gate.set_defaults(func=_gate)


# parsers ------------------------------------------------------------------------------------
def _uri(p) -> None:
    flags.add(p, "--tracking-uri", help="MLflow tracking URI (default: "
              "$TASKLADDER_TRACKING_URI, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db)")


def _rule(p) -> None:
    flags.add(p, "--metric", default="acc", help="acc: accuracy, tolerance in points; loss: "
              "the predicted task loss (e.g. bits per byte), relative tolerance")
    flags.add(p, "--tolerance", default=None, help="acc: points (default 5); loss: percent "
              "(default 5%%); or 'interval' = inside the prediction interval")


def _actual(p, required: bool = False, help: str | None = None) -> None:
    """--actual, --actual-format, --actual-run (old: --results, --format, --run)."""
    flags.add(p, "--actual", required=required, help=help or "the target's evaluation: "
              "lm-eval results (file or folder) or a CSV")
    flags.add(p, "--actual-format", help="olmo-csv, lm-eval or table (default: detect)")
    flags.add(p, "--actual-run", help="the run in --actual, if it holds several")
    flags.renamed(p, "--results", "--actual")
    flags.renamed(p, "--format", "--actual-format")
    flags.renamed(p, "--run", "--actual-run")


def _ladder(kinds) -> None:
    p = kinds.add_parser("ladder", help="one MLflow run per ladder run (metrics by step)")
    _uri(p)
    flags.add(p, "--ladder", help="the ladder's evaluations (any format the law engine reads)")
    flags.add(p, "--ladder-name", help="the ladder's name (the experiment is "
              "taskladder-ladder-<name>)")
    p.add_argument("path", nargs="?", help=argparse.SUPPRESS)  # old: PATH --ladder NAME
    flags.add(p, "--format", help="olmo-csv, lm-eval or table (default: detect)")
    flags.add(p, "--runs", help="comma-separated run globs to keep, e.g. '*-1xC,*-2xC'")
    p.add_argument("--tokenizer", help="tokenizer the ladder was trained with (a param of "
                   "every run; left out when not given)")
    p.add_argument("--corpus-hash", help="hash of the training corpus (a param of every run; "
                   "left out when not given)")
    flags.add(p, "--json", help="write {run: MLflow run id} to PATH (- = stdout)")
    p.set_defaults(func=_register_ladder)


def _fit(kinds) -> None:
    p = kinds.add_parser("fit", help="register fitted laws (ChainedFit JSON) as model versions")
    _uri(p)
    p.add_argument("fits", type=Path, help="JSON: one fit, a list of fits, or {task: fit}")
    flags.add(p, "--ladder", help="the ladder's evaluations the fits were made from (adds the "
              "runs used to the tags, checked against each fit's data hash)")
    flags.add(p, "--format", help="format of --ladder (default: detect)")
    flags.add(p, "--runs", help="run globs selected from --ladder before the fit")
    flags.add(p, "--ladder-name", help="the ladder's name, recorded as a tag")
    flags.renamed(p, "--observations", "--ladder", dest="observations")
    p.add_argument("--plot", action="append", default=[], type=Path, help="plot file (repeatable)")
    p.add_argument("--alias", default="current", help="alias set on the versions (default current)")
    p.add_argument("--no-alias", action="store_true", help="set no alias")
    flags.add(p, "--json", help="write {task: model version URI} to PATH (- = stdout)")
    p.set_defaults(func=_register_fit)


def _prediction(kinds) -> None:
    p = kinds.add_parser("prediction", help="predict a target with the registered laws and "
                                             "record it")
    _uri(p)
    flags.add(p, "--target", required=True, help="target name (a named target, e.g. 7B-4T, "
              "brings its N and D)")
    flags.add(p, "--target-n", type=float)
    flags.add(p, "--target-d", type=float)
    flags.add(p, "--target-flops", type=float)
    flags.renamed(p, "--N", "--target-n", type=float)
    flags.renamed(p, "--D", "--target-d", type=float)
    flags.add(p, "--tasks", required=True, help="comma-separated tasks")
    p.add_argument("--alias", default="current", help="law versions to use (alias or version)")
    flags.add(p, "--json", help="write the predictions to PATH (- = stdout)")
    p.set_defaults(func=_register_prediction)


def _alias(kinds) -> None:
    p = kinds.add_parser("alias", help="point an alias of a law model at a version")
    _uri(p)
    p.add_argument("--task", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--alias", required=True)
    flags.add(p, "--json", help="write {model, alias, version} to PATH (- = stdout)")
    p.set_defaults(func=_set_alias)


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


# `taskladder fit --register` / `predict --register` (flags and store used by cmd_laws) --------
def add_register_flags(parser) -> None:
    parser.add_argument("--register", action="store_true",
                        help="version the fits (and the prediction) in the MLflow registry")
    _uri(parser)
    parser.add_argument("--alias", default="current",
                        help="with --register: alias set on the new law versions (default current)")


def check_registry_store(args) -> None:
    """With --register: what opening the store would refuse, found without creating it (so a
    bad input found afterwards leaves no new store behind)."""
    if getattr(args, "register", False):
        from taskladder.registry.store import check_uri

        check_uri(args.tracking_uri)


def registry_store(args):
    """The store --register writes to, opened (so validated); else None."""
    if not getattr(args, "register", False):
        return None
    from taskladder.registry.store import open_store

    store = open_store(args.tracking_uri)
    store.check_artifacts()
    return store


# handlers -----------------------------------------------------------------------------------
def _read_obs(path: Path, fmt: str | None, runs: str | None):
    from taskladder.laws.readers import read_ladder, select_runs

    obs = read_ladder(path, fmt)
    return select_runs(obs, runs) if runs else obs


def _train_curves(path: Path, fmt: str | None) -> dict[str, dict[int, float]]:
    """Each run's training loss curve, where lm-eval results name a checkpoint that
    taskladder trained (`<run>/hf/step<k>`, the run's train_losses.jsonl beside it)."""
    from taskladder.common.meta import exported_losses
    from taskladder.laws.readers import detect_format, model_dirs

    if (fmt or detect_format(path)) != "lm-eval":
        return {}
    return {run: exported_losses(d) for run, d in model_dirs(path).items()}


def _register_ladder(args) -> int:
    from taskladder.registry.ladder_runs import log_ladder
    from taskladder.registry.store import open_store

    path, name = args.ladder, args.ladder_name
    if args.path is not None:  # the old spelling: register ladder PATH --ladder NAME
        flags.deprecated("register ladder PATH --ladder NAME", "--ladder PATH --ladder-name NAME")
        path, name = args.path, name or args.ladder
    if path is None or name is None:
        raise UsageError("register ladder: give --ladder PATH (the evaluations) and "
                         "--ladder-name NAME")
    obs = _read_obs(Path(path), args.format, args.runs)
    ids = log_ladder(open_store(args.tracking_uri), obs, name, tokenizer=args.tokenizer,
                     corpus_hash=args.corpus_hash, curves=_train_curves(Path(path), args.format))
    print(f"{len(ids)} ladder runs registered in experiment taskladder-ladder-{name}",
          file=flags.table_stream(args.json))
    flags.write_json_result(args.json, ids)
    return 0


def load_fits(path: Path) -> list:
    """ChainedFit objects from a JSON file: one fit, a list, {task: fit} or {"fits": ...}."""
    from taskladder.laws.chained import ChainedFit

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"fits file {str(path)!r}: cannot read JSON ({exc})") from None
    if isinstance(data, dict) and "fits" in data:
        data = data["fits"]
    if isinstance(data, dict) and "schema" not in data:
        data = list(data.values())
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(d, dict) for d in items):
        raise UsageError(f"fits file {str(path)!r}: expected fit objects")
    try:
        return [ChainedFit.from_dict(d) for d in items]
    except (KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"fits file {str(path)!r}: not a chained fit "
                         f"({type(exc).__name__}: {exc})") from None


def _register_fit(args) -> int:
    from taskladder.registry.laws import register_fit

    fits = load_fits(args.fits)
    path, name = _fit_ladder(args)
    obs = _read_obs(Path(path), args.format, args.runs) if path else None
    versions = register_fit(fits, tracking_uri=args.tracking_uri, observations=obs,
                            ladder=name, plots=args.plot,
                            alias=None if args.no_alias else args.alias)
    out = flags.table_stream(args.json)
    for f in fits:
        v = versions[f.task]
        note = "registered" if v.created else "already registered"
        alias = "" if args.no_alias else f" @{args.alias}"
        flag = "  (degenerate fit)" if f.flags["degenerate"] else ""
        print(f"{v.name} version {v.version}{alias}: {note}{flag}", file=out)
    flags.write_json_result(args.json, {t: v.uri for t, v in versions.items()})
    return 0


def _fit_ladder(args) -> tuple[str | None, str | None]:
    """(evaluations path, ladder name) of `register fit`. Old spelling: --observations PATH
    and --ladder NAME; a --ladder that names no file beside it is still read as a name."""
    if args.observations is not None:
        if args.ladder is not None:
            flags.deprecated("--ladder NAME", "--ladder-name NAME")
        return args.observations, args.ladder_name or args.ladder
    if args.ladder and args.ladder_name is None and not Path(args.ladder).exists() \
            and "/" not in args.ladder and not Path(args.ladder).suffix:
        flags.deprecated("--ladder NAME", "--ladder-name NAME")
        return None, args.ladder
    return args.ladder, args.ladder_name


def _register_prediction(args) -> int:
    from taskladder.common.facts import TARGETS
    from taskladder.laws.tasks import select_tasks
    from taskladder.predict import resolve_target
    from taskladder.registry.predictions import predict_from_registry
    from taskladder.registry.rule import DEFAULTS

    target = resolve_target(args.target if args.target in TARGETS else None, args.target_n,
                            args.target_d, args.target_flops)
    preds = predict_from_registry({"name": args.target, "N": target["N"], "D": target["D"]},
                                  select_tasks(flags.names(args.tasks)), alias=args.alias,
                                  tracking_uri=args.tracking_uri)
    print_predictions(preds, DEFAULTS["acc"][1], file=flags.table_stream(args.json))
    flags.write_json_result(args.json, {t: {"law": p.law_uri, **p.values}
                                        for t, p in preds.items()})
    return 0


def print_predictions(preds: dict, max_shift: float, file=None) -> None:
    """One line per registered task prediction; a moved prediction is flagged."""
    for task, p in preds.items():
        v = p.values
        shift = "" if p.shift is None else f", moved {p.shift:+.2f} points"
        moved = p.shift is not None and abs(p.shift) > max_shift
        warn = "  <- re-fit moved the prediction" if moved else ""
        trust = "" if p.assessment.status == "ok" else f"  [{p.assessment.describe()}]"
        print(f"{p.target} {task}: {p.acc_metric} {100 * v['acc']:.2f} "
              f"[{100 * v['acc_low']:.2f}, {100 * v['acc_high']:.2f}] from {p.law_uri}"
              f"{shift}{warn}{trust}", file=file)


def _set_alias(args) -> int:
    from taskladder.registry.laws import model_name, set_alias
    from taskladder.registry.store import open_store

    set_alias(open_store(args.tracking_uri, create=False), args.task, args.alias, args.version)
    print(f"{model_name(args.task)}@{args.alias} -> version {args.version}",
          file=flags.table_stream(args.json))
    flags.write_json_result(args.json, {"model": model_name(args.task), "alias": args.alias,
                                        "version": args.version})
    return 0


def _tasks(spec: str | None):
    from taskladder.laws.tasks import select_tasks

    return None if spec is None else select_tasks(flags.names(spec))


def _check_target(args) -> int:
    from taskladder.registry.gate import format_table, record_evaluation
    from taskladder.registry.rule import GateRule

    GateRule.parse(args.metric, args.tolerance, None)  # a bad form fails before any work
    if args.actual is None:
        raise UsageError("check-target: --actual PATH (the target's evaluation) is required")
    result = record_evaluation(Path(args.actual), args.actual_format, target=args.target,
                          tasks=_tasks(args.tasks), run=args.actual_run, metric=args.metric,
                          tolerance=args.tolerance, tracking_uri=args.tracking_uri)
    out = flags.table_stream(args.json)
    print(f"evaluation of {args.target} recorded (run {result['eval_run']})", file=out)
    print(format_table(result), file=out)
    flags.write_json_result(args.json, result)
    return 0


def _gate(args) -> int:
    from taskladder.registry.gate import format_table, record_evaluation, run_gate
    from taskladder.registry.rule import DEFAULT, GateRule
    from taskladder.registry.store import open_store

    if args.ladder is not None:
        from taskladder import trajectory_gate

        return trajectory_gate.run(args)
    if args.no_shift_check and args.max_shift is not None:
        raise UsageError("--max-shift and --no-shift-check exclude each other")
    max_shift = None if args.no_shift_check else (
        DEFAULT if args.max_shift is None else args.max_shift)
    rule = dict(metric=args.metric, tolerance=args.tolerance, max_shift=max_shift,
                strict=args.strict)
    GateRule.parse(**rule)  # a bad form fails before the store is opened
    if args.actual is not None and (not args.target or len(args.target) != 1):
        raise UsageError("--actual needs exactly one --target")
    store = open_store(args.tracking_uri, create=False)
    evaluation = None
    if args.actual is not None:  # gate this evaluation, whatever was checked before
        evaluation = record_evaluation(Path(args.actual), args.actual_format, target=args.target[0],
                                  run=args.actual_run, store=store)["eval_run"]
    verdict = run_gate(args.target, **rule, evaluation=evaluation,
                       predictions_only=args.predictions_only, store=store)
    print(format_table(verdict), file=flags.table_stream(args.json))
    if "not_recorded" in verdict:
        print(f"gate: the verdict is not recorded in the registry ({verdict['not_recorded']})",
              file=sys.stderr)
    flags.write_json_result(args.json, verdict)
    return 0 if verdict["passed"] else 1
