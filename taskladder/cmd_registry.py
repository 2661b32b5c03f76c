"""Registry verbs: `register` (ladder, fit, prediction, alias), `check-target`, `gate`.

The store is `--tracking-uri`, else $TASKLADDER_TRACKING_URI / $MLFLOW_TRACKING_URI, else
sqlite:///mlflow.db in the working directory. `gate` exits 0 (every task within tolerance),
1 (drift, a moved prediction, or with --strict an untrusted task) or 2 (usage error).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
    _target_results(chk, required=True)
    chk.add_argument("--tasks", help="comma-separated tasks to check (default: every predicted "
                     "task)")
    _rule(chk)
    chk.set_defaults(func=_check_target)

    gate = sub.add_parser("gate", help="exit 0 if every task of the target(s) is within "
                                       "tolerance, 1 on drift, 2 on usage errors")
    _uri(gate)
    gate.add_argument("--target", action="append", help="target name (repeatable; default: "
                      "every target with a recorded evaluation)")
    gate.add_argument("--results", type=Path, help="record this evaluation first (as "
                      "check-target) and gate it")
    gate.add_argument("--format", help="format of --results (olmo-csv, lm-eval, table; "
                      "default: detect)")
    gate.add_argument("--run", help="the run in --results, if it holds several")
    _rule(gate)
    gate.add_argument("--max-shift", default=None, help="fail when a re-fit moved a registered "
                      "prediction by more than this (acc: points, default 2; loss: e.g. 2%%)")
    gate.add_argument("--no-shift-check", action="store_true", help="do not check moved "
                      "predictions")
    gate.add_argument("--strict", action="store_true", help="an untrusted row (a task the law "
                      "engine marked unpredictable) fails the gate")
    gate.add_argument("--predictions-only", action="store_true", help="check only moved "
                      "predictions (before the target has been evaluated)")
    gate.add_argument("--json", type=Path, metavar="FILE", help="also write the verdict as JSON")
    gate.set_defaults(func=_gate)


# parsers ------------------------------------------------------------------------------------
def _uri(p) -> None:
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: "
                   "$TASKLADDER_TRACKING_URI, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db)")


def _rule(p) -> None:
    p.add_argument("--metric", default="acc", help="acc: accuracy, tolerance in points; loss: "
                   "the predicted task loss (e.g. bits per byte), relative tolerance")
    p.add_argument("--tolerance", default=None, help="acc: points (default 5); loss: percent "
                   "(default 5%%); or 'interval' = inside the prediction interval")


def _target_results(p, required: bool) -> None:
    p.add_argument("--target", required=required, help="target name, as registered with the "
                   "prediction")
    p.add_argument("--results", type=Path, required=required,
                   help="the target's evaluation: lm-eval results (file or folder) or a CSV")
    p.add_argument("--format", help="olmo-csv, lm-eval or table (default: detect)")
    p.add_argument("--run", help="the run in --results, if it holds several")


def _ladder(kinds) -> None:
    p = kinds.add_parser("ladder", help="one MLflow run per ladder run (metrics by step)")
    _uri(p)
    p.add_argument("path", type=Path, help="ladder evaluations (any format the law engine reads)")
    p.add_argument("--ladder", required=True, help="ladder name (the experiment is "
                   "taskladder-ladder-<name>)")
    p.add_argument("--format", help="olmo-csv, lm-eval or table (default: detect)")
    p.add_argument("--runs", help="comma-separated run globs to keep, e.g. '*-1xC,*-2xC'")
    p.add_argument("--tokenizer", help="tokenizer the ladder was trained with (a param of "
                   "every run; left out when not given)")
    p.add_argument("--corpus-hash", help="hash of the training corpus (a param of every run; "
                   "left out when not given)")
    p.set_defaults(func=_register_ladder)


def _fit(kinds) -> None:
    p = kinds.add_parser("fit", help="register fitted laws (ChainedFit JSON) as model versions")
    _uri(p)
    p.add_argument("fits", type=Path, help="JSON: one fit, a list of fits, or {task: fit}")
    p.add_argument("--observations", type=Path, help="the ladder the fits were made from (adds "
                   "the runs used to the tags, checked against each fit's data hash)")
    p.add_argument("--format", help="format of --observations (default: detect)")
    p.add_argument("--runs", help="run globs selected from --observations before the fit")
    p.add_argument("--ladder", help="ladder name, recorded as a tag")
    p.add_argument("--plot", action="append", default=[], type=Path, help="plot file (repeatable)")
    p.add_argument("--alias", default="current", help="alias set on the versions (default current)")
    p.add_argument("--no-alias", action="store_true", help="set no alias")
    p.set_defaults(func=_register_fit)


def _prediction(kinds) -> None:
    p = kinds.add_parser("prediction", help="predict a target with the registered laws and "
                                             "record it")
    _uri(p)
    p.add_argument("--target", required=True, help="target name")
    p.add_argument("--N", type=float, required=True, dest="N", help="target parameters")
    p.add_argument("--D", type=float, required=True, dest="D", help="target training tokens")
    p.add_argument("--tasks", required=True, help="comma-separated tasks")
    p.add_argument("--alias", default="current", help="law versions to use (alias or version)")
    p.set_defaults(func=_register_prediction)


def _alias(kinds) -> None:
    p = kinds.add_parser("alias", help="point an alias of a law model at a version")
    _uri(p)
    p.add_argument("--task", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--alias", required=True)
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


def registry_store(args):
    """The store --register writes to, opened (so validated) before any work; else None."""
    if not getattr(args, "register", False):
        return None
    from taskladder.registry.store import open_store

    return open_store(args.tracking_uri)


# handlers -----------------------------------------------------------------------------------
def _read_obs(path: Path, fmt: str | None, runs: str | None):
    from taskladder.laws.readers import read_ladder, select_runs

    obs = read_ladder(path, fmt)
    return select_runs(obs, runs) if runs else obs


def _register_ladder(args) -> int:
    from taskladder.registry.ladder_runs import log_ladder
    from taskladder.registry.store import open_store

    obs = _read_obs(args.path, args.format, args.runs)
    ids = log_ladder(open_store(args.tracking_uri), obs, args.ladder, tokenizer=args.tokenizer,
                     corpus_hash=args.corpus_hash)
    print(f"{len(ids)} ladder runs registered in experiment taskladder-ladder-{args.ladder}")
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
    obs = _read_obs(args.observations, args.format, args.runs) if args.observations else None
    versions = register_fit(fits, tracking_uri=args.tracking_uri, observations=obs,
                            ladder=args.ladder, plots=args.plot,
                            alias=None if args.no_alias else args.alias)
    for f in fits:
        v = versions[f.task]
        note = "registered" if v.created else "already registered"
        alias = "" if args.no_alias else f" @{args.alias}"
        flag = "  (degenerate fit)" if f.flags["degenerate"] else ""
        print(f"{v.name} version {v.version}{alias}: {note}{flag}")
    return 0


def _register_prediction(args) -> int:
    from taskladder.laws.tasks import parse_tasks
    from taskladder.registry.predictions import predict_from_registry
    from taskladder.registry.rule import DEFAULTS

    preds = predict_from_registry({"name": args.target, "N": args.N, "D": args.D},
                                  parse_tasks(args.tasks), alias=args.alias,
                                  tracking_uri=args.tracking_uri)
    print_predictions(preds, DEFAULTS["acc"][1])
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
    print(f"{model_name(args.task)}@{args.alias} -> version {args.version}")
    return 0


def _tasks(spec: str | None):
    from taskladder.laws.tasks import parse_tasks

    return None if spec is None else parse_tasks(spec)


def _check_target(args) -> int:
    from taskladder.registry.gate import check_target, format_table
    from taskladder.registry.rule import GateRule

    GateRule.parse(args.metric, args.tolerance, None)  # a bad form fails before any work
    result = check_target(args.results, args.format, target=args.target, tasks=_tasks(args.tasks),
                          run=args.run, metric=args.metric, tolerance=args.tolerance,
                          tracking_uri=args.tracking_uri)
    print(f"evaluation of {args.target} recorded (run {result['eval_run']})")
    print(format_table(result))
    return 0


def _gate(args) -> int:
    from taskladder.common.io import write_json
    from taskladder.registry.gate import check_target, format_table, run_gate
    from taskladder.registry.rule import DEFAULT, GateRule
    from taskladder.registry.store import open_store

    if args.no_shift_check and args.max_shift is not None:
        raise UsageError("--max-shift and --no-shift-check exclude each other")
    max_shift = None if args.no_shift_check else (
        DEFAULT if args.max_shift is None else args.max_shift)
    rule = dict(metric=args.metric, tolerance=args.tolerance, max_shift=max_shift,
                strict=args.strict)
    GateRule.parse(**rule)  # a bad form fails before the store is opened
    if args.results is not None and (not args.target or len(args.target) != 1):
        raise UsageError("--results needs exactly one --target")
    store = open_store(args.tracking_uri, create=False)
    evaluation = None
    if args.results is not None:  # gate this evaluation, whatever was checked before
        evaluation = check_target(args.results, args.format, target=args.target[0],
                                  run=args.run, store=store)["eval_run"]
    verdict = run_gate(args.target, **rule, evaluation=evaluation,
                       predictions_only=args.predictions_only, store=store)
    print(format_table(verdict))
    if args.json:
        write_json(args.json, verdict)
    return 0 if verdict["passed"] else 1
