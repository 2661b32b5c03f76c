"""`taskladder analyze`: the paper's variants beside the chained law (METHOD.md section 7).

  --variant single-step       Acc(N, D) fitted in one step on the runs' final accuracies
  --variant mc-step2          RC task loss -> MC accuracy (floor chance, ceiling 1 fixed)
  --variant variance          checkpoint-to-checkpoint SD of the feature and the accuracy
  --variant compute-vs-error  chained prediction as the ladder shrinks (fewer sizes/lengths)

Each prints a table; `--json OUT` writes {"schema": "taskladder.analysis/1", "variant", "rows"}.
"""

from __future__ import annotations

import argparse
import sys

from taskladder.cmd_laws import add_law_flags, load_inputs, resolve_target
from taskladder.errors import UsageError

VARIANTS = ("single-step", "mc-step2", "variance", "compute-vs-error")
SCHEMA = "taskladder.analysis/1"


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="the paper's variants: single step, MC step 2, variance analysis, compute vs error",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--ladder", required=True, metavar="PATH", help="ladder evaluations")
    p.add_argument("--format", choices=("olmo-csv", "lm-eval", "table"))
    p.add_argument("--runs", metavar="GLOBS", help="run globs forming the ladder (as predict)")
    p.add_argument("--tasks", metavar="LIST", help="task keys (default: the paper's 8)")
    p.add_argument(
        "--method",
        choices=("paper", "default"),
        default="paper",
        help="chained settings for compute-vs-error (default: paper)",
    )
    p.add_argument("--target", metavar="NAME", help="a named target: 7B-4T or 13B-5T")
    p.add_argument("--target-n", type=float, metavar="N")
    p.add_argument("--target-d", type=float, metavar="D")
    p.add_argument("--target-flops", type=float, metavar="C")
    p.add_argument("--actual", metavar="PATH", help="the target's evaluation (errors vs actual)")
    p.add_argument("--actual-run", metavar="RUN")
    p.add_argument("--json", metavar="OUT", help="write the rows here")
    add_law_flags(p)
    p.set_defaults(func=_analyze, bootstrap=0, seed=0, plots=None, actual_format=None)


def analyze_command(args: argparse.Namespace) -> list[dict]:
    """The rows of one variant (nothing printed or written)."""
    from taskladder.laws.readers import read_ladder

    inputs = load_inputs(args)
    obs, tasks = inputs.obs, inputs.tasks
    actual = None
    if args.actual:
        actual = read_ladder(args.actual, args.actual_format)
        runs = actual.unique("run")
        run = args.actual_run or runs[0]
        if run not in runs:
            raise UsageError(f"--actual-run: {run!r} is not in {args.actual}")
        actual = actual.where(run=run)
    needs_target = args.variant in ("single-step", "compute-vs-error")
    target = resolve_target(args, obs, actual) if needs_target or args.target else None
    return _VARIANTS[args.variant](args, inputs, tasks, target, actual)


def _final(actual, task: str, metric: str) -> float | None:
    if actual is None or not len(actual.where(task=task, metric=metric)):
        return None
    return float(actual.finals(task, metric, 5).y[0])


def _single_step(args, inputs, tasks, target, actual) -> list[dict]:
    from taskladder.laws.tasks import accuracy_metric, chance_level
    from taskladder.laws.variants import fit_single_step, single_step

    rows = []
    for task in tasks:
        sol = fit_single_step(
            inputs.obs, task, chance=chance_level(task, inputs.obs, inputs.fitter.chance)
        )
        pred = float(single_step(sol.params, [target["N"]], [target["D"]])[0])
        row = {
            "task": task,
            "predicted": pred,
            "converged": sol.converged,
            "params": dict(
                zip(("a", "b", "alpha", "beta", "E", "p", "q"), map(float, sol.params), strict=True)
            ),
        }
        got = _final(actual, task, accuracy_metric(task, inputs.obs))
        if got is not None:
            row.update(actual=got, abs_error_points=abs(pred - got) * 100)
        rows.append(row)
    return rows


def _mc_step2(args, inputs, tasks, target, actual) -> list[dict]:
    from taskladder.laws.step2 import sigmoid
    from taskladder.laws.tasks import chance_level
    from taskladder.laws.variants import fit_mc_step2

    rows = []
    for task in tasks:
        sol = fit_mc_step2(
            inputs.obs, task, chance=chance_level(task, inputs.obs, inputs.fitter.chance)
        )
        row = {
            "task": task,
            "L0": float(sol.params[1]),
            "k": float(sol.params[2]),
            "converged": sol.converged,
        }
        if target:
            loss = float(
                inputs.fitter.fit(inputs.obs, task).predict(target["N"], target["D"])["loss"]
            )
            row.update(target_loss=loss, predicted=float(sigmoid(sol.params, [loss])[0]))
            got = _final(actual, task, "acc_mc")
            if got is not None:
                row.update(actual=got, abs_error_points=abs(row["predicted"] - got) * 100)
        rows.append(row)
    return rows


def _variance(args, inputs, tasks, target, actual) -> list[dict]:
    from taskladder.laws.chained import features
    from taskladder.laws.variants import variance_table

    feats = {}
    for t in tasks:
        have = features(inputs.obs, t)
        f = args.feature if args.feature and args.feature != "auto" else (have or ["bpb"])[0]
        feats[t] = (t, f) if f in ("bpb", "task_ce") else ("lm", f)
    table = variance_table(inputs.obs, tasks, features=feats)
    return [{"task": t, **row} for t, row in table.items()]


def _compute_vs_error(args, inputs, tasks, target, actual) -> list[dict]:
    from taskladder.laws.tasks import accuracy_metric
    from taskladder.laws.variants import compute_vs_error

    rows = []
    s = inputs.fitter.settings.replace(select="fixed", n_bootstrap=0)
    for task in tasks:
        got = _final(actual, task, accuracy_metric(task, inputs.obs))
        for r in compute_vs_error(inputs.obs, task, (target["N"], target["D"]), got, s):
            rows.append({"task": task, **r})
    return rows


_VARIANTS = {
    "single-step": _single_step,
    "mc-step2": _mc_step2,
    "variance": _variance,
    "compute-vs-error": _compute_vs_error,
}


def _analyze(args: argparse.Namespace) -> int:
    from taskladder.common.io import write_json

    if args.json:
        from pathlib import Path

        if not Path(args.json).resolve().parent.is_dir():
            raise UsageError(f"cannot write {args.json!r}: its folder does not exist")
    rows = analyze_command(args)
    for row in rows:
        print("  ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("params", "runs")))
    if args.json:
        write_json(
            args.json,
            {"schema": SCHEMA, "variant": args.variant, "rows": rows},
            indent=1,
            allow_nan=False,
        )
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(_fmt(x) for x in v)
    return str(v)
