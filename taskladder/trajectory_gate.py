"""`taskladder gate --ladder PATH --actual PATH`: the target's every checkpoint against its
trajectory band (laws/trajectory.py, laws/watch.py), exit 1 when the latest checkpoints drift.

The ladder's trajectory laws are fitted here (one per task); the target's evaluations are any
format the readers take (lm-eval results, an OLMo CSV, the observation table) or a run the
live watch logged in MLflow (`mlflow:RUN_ID`). Its N comes from the evaluations, its planned
total from `--schedule` or `--target-d`.
"""

from __future__ import annotations

from pathlib import Path

from taskladder import flags
from taskladder.common.errors import InputError, field_names
from taskladder.common.facts import PAPER_LADDER
from taskladder.common.target import target_run
from taskladder.laws import watch
from taskladder.laws.observations import Observations
from taskladder.laws.readers import detect_format, read_ladder, select_runs, sizes_of
from taskladder.laws.tasks import accuracy_metric
from taskladder.laws.trajectory import Schedule, TrajectoryLaw, fit_trajectory

DEFAULT_PATIENCE = 3


def parse_patience(value, where: str = "--patience") -> int:
    try:
        k = int(str(value))
    except ValueError:
        k = 0
    if k < 1:
        raise InputError(f"{where} {value!r}: expected a whole number of checkpoints >= 1")
    return k


def parse_schedule(text: str | None, planned: float | None, where: str = "--schedule") -> Schedule:
    """`cosine` (planned total = `planned`, i.e. --target-d), `cosine=5T[,anneal=3.9T,end=3.95T]`,
    or another shape's name (`wsd=5T`: its checkpoints are untrusted) as the law's Schedule."""
    items = {"cosine": ""} if not text else {}
    for part in flags.names(text) or []:
        key, _, value = part.partition("=")
        items[key.strip()] = value.strip()
    shapes = [k for k in items if k not in ("anneal", "end")]
    if len(shapes) != 1:
        raise InputError(f"{where}: {text!r}: name one shape (e.g. cosine=5T)")
    shape = shapes[0]
    if not items[shape] and planned is None:
        raise InputError(
            f"{where}: the target's planned total is unknown: give {shape}=TOKENS or --target-d"
        )
    counts = sizes_of({k: v for k, v in items.items() if v}, where)
    with field_names({"schedule.planned": where, "schedule.anneal_from": where}):
        return Schedule(counts.get(shape, planned), shape,
                        counts.get("anneal"), counts.get("end"))


def fit_laws(ladder: Observations, tasks: list[str]) -> dict[str, TrajectoryLaw]:
    return {t: fit_trajectory(ladder, t) for t in tasks}


def target_checkpoints(target: Observations, tasks: list[str], metric: str,
                       where: str) -> dict[str, dict]:
    """Per task, the target's checkpoints of the gated metric (validated before any fit)."""
    return {
        t: watch.checkpoints(target, t, "bpb" if metric == "loss" else accuracy_metric(t, target),
                             where)
        for t in tasks
    }


def gate_checkpoints(laws: dict[str, TrajectoryLaw], cps: dict[str, dict], schedule: Schedule,
                     metric: str, tolerance, patience: int) -> dict:
    """The verdict document: per task its checkpoints' rows and its verdict; `passed`."""
    tol = tolerance if tolerance == "interval" else float(tolerance) / 100
    tasks = {}
    for task, law in laws.items():
        rows = watch.judge(law, schedule, cps[task], metric, tol)
        m = law.loss_metric if metric == "loss" else law.acc_metric
        tasks[task] = dict(watch.task_verdict(rows, patience), metric=m, checkpoints=rows)
    return {
        "mode": "trajectory",
        "rule": {"metric": metric, "tolerance": tolerance, "patience": patience},
        "schedule": schedule.to_dict(),
        "tasks": tasks,
        "passed": all(t["verdict"] != "drift" for t in tasks.values()),
    }


def format_table(doc: dict, last: int = 3) -> str:
    r = doc["rule"]
    lines = [f"trajectory gate: {r['metric']}, tolerance {r['tolerance']}, patience "
             f"{r['patience']}"]
    lines.append(f"{'task':<16}{'verdict':<11}{'pass':>6}{'drift':>7}{'untr.':>7}  latest")
    for task, t in doc["tasks"].items():
        cps = t["checkpoints"]
        count = {v: sum(c["verdict"] == v for c in cps) for v in watch.VERDICTS}
        tail = ", ".join(f"{c['step']}:{c['verdict']}" for c in cps[-last:])
        since = f" (since step {t['since_step']})" if t["since_step"] is not None else ""
        lines.append(f"{task:<16}{t['verdict'] + since:<11}{count['pass']:>6}{count['drift']:>7}"
                     f"{count['untrusted']:>7}  {tail}")
    lines.append("PASS" if doc["passed"] else "DRIFT: the latest checkpoints left the band")
    return "\n".join(lines)


def read_target(path: str, fmt: str | None, run: str | None,
                tracking_uri: str | None = None) -> Observations:
    """The target's checkpoint evaluations, one run: a file or folder the readers take, or
    `mlflow:RUN_ID`, a run the live watch logged (registry/watch_runs.py)."""
    if path.startswith("mlflow:"):
        from taskladder.registry.store import open_store
        from taskladder.registry.watch_runs import read_run

        return read_run(open_store(tracking_uri, create=False), path.removeprefix("mlflow:"))
    obs = read_ladder(Path(path), fmt)
    return obs.where(run=target_run(obs.unique("run"), run, path))


def read_ladder_runs(path: str, runs: str | None) -> Observations:
    obs = read_ladder(Path(path))
    if runs:
        return select_runs(obs, runs)
    p = Path(path)
    if detect_format(p) == "olmo-csv":  # the released folder holds the 7B too: the paper ladder
        return select_runs(obs, PAPER_LADDER)
    return obs


def run(args) -> int:
    """The gate verb in trajectory mode (`--ladder` given)."""
    from taskladder.laws.tasks import select_tasks
    from taskladder.registry.rule import GateRule

    rule = GateRule.parse(args.metric, args.tolerance if args.tolerance else "interval", None)
    patience = parse_patience(args.patience or DEFAULT_PATIENCE)
    if args.actual is None:
        raise InputError("--actual: the target's checkpoint evaluations are required with --ladder")
    schedule = parse_schedule(args.schedule, args.target_d)
    target = read_target(args.actual, args.actual_format, args.actual_run, args.tracking_uri)
    tasks = select_tasks(flags.names(args.tasks), target)  # nothing asked: the target's tasks
    cps = target_checkpoints(target, tasks, rule.metric, args.actual)
    ladder = read_ladder_runs(args.ladder, args.runs)
    doc = gate_checkpoints(fit_laws(ladder, tasks), cps, schedule, rule.metric, rule.tolerance,
                           patience)
    print(format_table(doc), file=flags.table_stream(args.json))
    flags.write_json_result(args.json, doc)
    return 0 if doc["passed"] else 1
