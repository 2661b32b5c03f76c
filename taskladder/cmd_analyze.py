"""`taskladder analyze`: the paper's variants beside the chained law (METHOD.md section 7).

  --variant single-step       Acc(N, D) fitted in one step on the runs' final accuracies
  --variant mc-step2          RC task loss -> MC accuracy (floor chance, ceiling 1 fixed)
  --variant variance          checkpoint-to-checkpoint SD of the feature and the accuracy
  --variant compute-vs-error  chained prediction as the ladder shrinks (fewer sizes/lengths)

Each prints a table; `--json OUT` writes {"schema": "taskladder.analysis/1", "variant", "rows"}.
"""

from __future__ import annotations

import argparse

from taskladder import flags
from taskladder.cmd_laws import (
    add_ladder_flags,
    add_law_flags,
    add_target_flags,
    load_inputs,
    read_actual,
    resolve_target,
)

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
    add_ladder_flags(p)
    flags.add(p, "--tasks", help="task keys, 'all' or 'paper' (default: the paper's 8 the "
              "ladder has, else all)")
    p.add_argument(
        "--method",
        choices=("paper", "default"),
        default="paper",
        help="chained settings for compute-vs-error (default: paper)",
    )
    add_target_flags(p)
    flags.add(p, "--json", help="write the rows to PATH (- = stdout)")
    add_law_flags(p)
    p.set_defaults(func=_analyze, bootstrap=0, seed=0, plots=None)


def analyze_command(args: argparse.Namespace) -> list[dict]:
    """The rows of one variant (nothing printed or written)."""
    inputs = load_inputs(args)
    obs, tasks = inputs.obs, inputs.tasks
    actual = read_actual(args)
    needs_target = args.variant in ("single-step", "compute-vs-error")
    target = resolve_target(args, obs, actual) if needs_target or args.target else None
    return _VARIANTS[args.variant](args, inputs, tasks, target, actual)


def _final(actual, task: str, metric: str) -> float | None:
    if actual is None or not len(actual.where(task=task, metric=metric)):
        return None
    return float(actual.finals(task, metric, 5).y[0])


def _single_step(args, inputs, tasks, target, actual) -> list[dict]:
    from taskladder.laws.tasks import accuracy_metric, chance_level
    from taskladder.laws.variants import SINGLE_STEP_PARAMS, fit_single_step, single_step

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
                zip(SINGLE_STEP_PARAMS, map(float, sol.params), strict=True)
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
    from taskladder.laws.resolve import features
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
    rows = analyze_command(args)
    out = flags.table_stream(args.json)
    for row in rows:
        print("  ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("params", "runs")),
              file=out)
    flags.write_json_result(args.json, {"schema": SCHEMA, "variant": args.variant, "rows": rows},
                            indent=1, allow_nan=False)
    return 0


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(_fmt(x) for x in v)
    return str(v)
