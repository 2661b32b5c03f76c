"""Seeded random ladders of every shape and defect a user may bring, and the invariants a
`taskladder predict` answer must hold on each (tests/test_laws_fuzz.py).

`random_case(seed)` draws one ladder (1-6 sizes, two of them sometimes of equal N; 1-4
lengths per size; 1-30 checkpoints a run at irregular steps; 1-4 of the paper's tasks and
sometimes an unknown one, its chance given or not; the task's bpb, only an LM loss, both or
neither; noise 0 to 30%; accuracy following a sigmoid (one falling to 0), at chance, constant,
or above 1 - chance; loss following its law, constant, or rising with N; N from 1e3 to 1e12) and a
target (beyond the ladder, far beyond, smaller in N but longer, inside it, or given by
compute). `check_answer` holds the answer to the rules of issue 16: exit 0 with every task
judged, or exit 2 with one line where the whole ladder (or the target) is unusable.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taskladder.common.facts import CHANCE, TASKS, train_flops
from taskladder.laws.observations import COLUMNS, Observations
from taskladder.laws.step1 import nd_loss
from taskladder.laws.step2 import sigmoid
from taskladder.laws.tasks import accuracy_metric, select_tasks

STATUSES = {"ok", "caution", "unpredictable"}
UNKNOWN = "my_task"  # a task the facts do not know: its chance comes from --chance or nowhere
# An `ok` accuracy: its 90% interval at most this wide either side (calibrated: the trust
# rule's 5 points; the paper's bootstrap interval has no such rule, a sane bound only).
OK_HALFWIDTH = {"default": 0.05 + 1e-9, "paper": 0.25}
TOL = 1e-9
REFUSED_TARGETS = ("inside", "flops-only")  # inside the ladder; compute without N


@dataclass
class Case:
    """One drawn ladder, the flags that ask for its prediction, and what was drawn."""

    seed: int
    obs: Observations
    argv: list[str]  # everything after `taskladder predict --ladder PATH`
    tasks: list[str]  # the tasks the answer must hold (explicit --tasks, or the ladder's)
    method: str
    drawn: dict = field(default_factory=dict)


def random_case(seed: int, bootstrap: int = 20) -> Case:
    rng = np.random.default_rng(seed)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    n_sizes = int(pick([1, 2, 3, 3, 4, 4, 5, 5, 6, 6]))
    scale = pick([1e3, 1e5, 2e7, 1e9, 1e12])
    ratios = np.cumprod(np.r_[1.0, rng.uniform(1.4, 3.0, n_sizes - 1)])
    sizes = scale * ratios
    equal_n = n_sizes >= 2 and rng.random() < 0.15
    if equal_n:  # two sizes named apart, of one N
        sizes[1] = sizes[0]
    lengths = int(rng.integers(1, 5))
    shared_length = lengths == 1 and rng.random() < 0.5  # a model suite: one D for all
    tpps = np.sort(rng.choice([2.0, 5.0, 10.0, 20.0, 40.0, 100.0], lengths, replace=False))
    n_ckpt = int(pick([1, 1, 2, 3, 5, 10, 30]))
    noise = float(pick([0.0, 0.003, 0.03, 0.3]))
    # "some": the first task alone has its bpb (no LM loss): the others have no feature
    feature = pick(["bpb", "bpb", "lm", "lm", "both", "both", "neither", "some"])
    acc_mode = pick(["law", "law", "law", "to-zero", "chance", "constant", "above"])
    odd = pick(["none", "none", "one-task-acc", "ragged"])  # one task at chance; rows lost
    loss_mode = pick(["law", "law", "law", "constant", "rising"])
    known = [str(t) for t in rng.choice(list(TASKS), int(rng.integers(1, 5)), replace=False)]
    tasks = known + ([UNKNOWN] if rng.random() < 0.25 else [])
    chance = dict(CHANCE)
    given_chance = UNKNOWN in tasks and rng.random() < 0.6
    chance[UNKNOWN] = 0.3 if given_chance else 0.25
    p1 = np.array([4.0, 5.0, 0.3, 0.3, 0.6]) + np.r_[np.log(scale / 2e7) * 0.3, 0, 0, 0, 0]
    cols: dict[str, list] = {c: [] for c in COLUMNS}

    def add(run, size, n, D, steps, task, metric, values):
        k = len(D)
        cols["run"] += [run] * k
        cols["size"] += [size] * k
        cols["N"] += [n] * k
        cols["D"] += list(D)
        cols["step"] += list(steps)
        cols["flops"] += train_flops(n, np.asarray(D)).tolist()
        cols["task"] += [task] * k
        cols["metric"] += [metric] * k
        cols["value"] += [float(v) for v in values]

    suite_d = 20.0 * sizes.max()
    for i, n in enumerate(sizes):
        size = f"s{i}"
        for tpp in tpps:
            d_final = suite_d if shared_length else float(tpp * n)
            fr = np.sort(rng.uniform(0.02, 1.0, n_ckpt - 1)) if n_ckpt > 1 else np.array([])
            D = np.unique(np.r_[fr, 1.0] * d_final)
            steps = np.arange(1, len(D) + 1) * int(rng.integers(1, 1000))
            run = f"{size}-{tpp:g}x" if not shared_length else size
            if loss_mode == "law":
                base = nd_loss(p1, np.full_like(D, n), D)
            elif loss_mode == "constant":
                base = np.full_like(D, 1.7)
            else:  # rising with N
                base = 1.0 + 0.2 * np.log(n / scale + 1) + 0.0 * D
            lm = base * (1 + noise * rng.standard_normal(len(D)))
            lm = np.clip(lm, 1e-3, None)
            if feature in ("lm", "both"):
                add(run, size, n, D, steps, "lm", "ce_c4_en", lm)
            for task in dict.fromkeys(tasks):
                c = chance[task]
                x = np.clip(base * 1.3 * (1 + noise * rng.standard_normal(len(D))), 1e-3, None)
                if feature in ("bpb", "both") or (feature == "some" and task == tasks[0]):
                    add(run, size, n, D, steps, task, "bpb", x)
                mode = "chance" if odd == "one-task-acc" and task == tasks[-1] else acc_mode
                if mode == "law":
                    acc = sigmoid(np.array([c - 1, 1.3 * 1.3, 4.0, 1.0]), base * 1.3)
                elif mode == "to-zero":  # a floor below 0: accuracy falls to 0 at high loss
                    acc = sigmoid(np.array([-1.0, 1.3 * 1.3, 3.0, 0.9]), base * 1.3)
                elif mode == "chance":
                    acc = np.full_like(D, c)
                elif mode == "constant":
                    acc = np.full_like(D, 0.6)
                else:  # above 1 - chance: a saturated task
                    acc = np.full_like(D, min(1 - c + 0.5 * c, 0.999))
                acc = np.clip(acc + noise * 0.2 * rng.standard_normal(len(D)), 0.0, 1.0)
                add(run, size, n, D, steps, task, accuracy_metric(task), acc)
    n_max, d_max = float(sizes.max()), float(max(cols["D"]))
    if odd == "ragged":  # a fifth of the rows lost: a task's checkpoints differ by metric
        keep = rng.random(len(cols["run"])) >= 0.2
        cols = {c: [v for v, k in zip(vals, keep, strict=True) if k] for c, vals in cols.items()}
    obs = Observations.from_columns(cols, where=f"fuzz ladder {seed}")

    target_kind = pick(["beyond", "beyond", "far", "smaller-n", "inside", "flops", "flops-only"])
    if target_kind == "beyond":
        tn, td = 2 * n_max, 20 * 2 * n_max
    elif target_kind == "far":
        tn, td = 1e4 * n_max, 1e4 * d_max
    elif target_kind == "smaller-n":
        tn, td = float(sizes.min()) / 2, 4 * d_max
    else:  # inside the ladder; compute
        tn, td = n_max, d_max * (1.0 if target_kind == "inside" else 3.0)
    target = ["--target-n", repr(tn), "--target-d", repr(td)]
    if target_kind.startswith("flops"):
        target = ["--target-n", repr(tn), "--target-flops", repr(train_flops(tn, td))]
    if target_kind == "flops-only":  # no N: not a target (exit 2, one line)
        target = target[2:]
    method = pick(["default", "default", "paper"])
    argv = [*target, "--method", method, "--bootstrap", str(bootstrap), "--seed", str(seed)]
    asked = rng.random() < 0.5
    if asked:
        argv += ["--tasks", ",".join(tasks)]
    if given_chance:
        argv += ["--chance", f"{UNKNOWN}={chance[UNKNOWN]}"]
    extra = pick([[], [], [], ["--tasks", "all"], ["--schedule", "constant"],
                  ["--step1-form", "nd"], ["--feature", "ce_c4_en"]])
    if extra[:1] == ["--tasks"] and asked:  # all, not the drawn ones
        del argv[argv.index("--tasks") : argv.index("--tasks") + 2]
        asked = False
    argv += extra
    drawn = dict(n_sizes=n_sizes, equal_n=equal_n, scale=scale, lengths=lengths,
                 shared_length=shared_length, checkpoints=n_ckpt, noise=noise, feature=feature,
                 acc=acc_mode, odd=odd, loss=loss_mode, target=target_kind, tasks=tasks,
                 given_chance=given_chance, asked=asked, extra=" ".join(extra))
    return Case(seed, obs, argv, tasks, method, drawn)


def alone(case: Case, task: str) -> Case:
    """The same ladder and target, asking for one task."""
    argv = list(case.argv)
    if "--tasks" in argv:
        del argv[argv.index("--tasks") : argv.index("--tasks") + 2]
    drawn = dict(case.drawn, asked=True)
    return Case(case.seed, case.obs, [*argv, "--tasks", task], [task], case.method, drawn)


def run_in_process(case: Case, folder: Path) -> tuple[int, dict | None, str]:
    """`taskladder predict` through `taskladder.cli.main` with TASKLADDER_DEBUG=1 (a failure
    nobody named re-raises: the test sees the traceback). (exit code, report, stderr)."""
    from taskladder.cli import main

    ladder, out = _files(case, folder)
    err = io.StringIO()
    old = os.environ.get("TASKLADDER_DEBUG")
    os.environ["TASKLADDER_DEBUG"] = "1"
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["predict", "--ladder", str(ladder), *case.argv, "--json", str(out)])
    finally:
        if old is None:
            del os.environ["TASKLADDER_DEBUG"]
        else:
            os.environ["TASKLADDER_DEBUG"] = old
    return rc, (json.loads(out.read_text()) if out.exists() else None), err.getvalue()


def run_cli(case: Case, folder: Path) -> tuple[int, dict | None, str]:
    """The real command in a subprocess, the report on stdout (`--json -`)."""
    ladder, _ = _files(case, folder)
    exe = Path(sys.executable).with_name("taskladder")
    proc = subprocess.run([str(exe), "predict", "--ladder", str(ladder), *case.argv,
                           "--json", "-"], capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, report, proc.stderr


def _files(case: Case, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ladder = folder / f"ladder-{case.seed}.csv"
    if not ladder.exists():
        case.obs.to_csv(ladder)
    out = folder / f"report-{case.seed}.json"
    out.unlink(missing_ok=True)
    return ladder, out


def check_answer(case: Case, rc: int, report: dict | None, stderr: str, alone=None) -> list[str]:
    """What is wrong with an answer (empty: nothing): see the module docstring. `alone(task)`
    answers the same ladder for one task (exit code): where the whole answer is exit 2, no task
    may be predictable on its own (one bad task must not take the others down)."""
    if "Traceback" in stderr:
        return [f"traceback: {stderr.strip().splitlines()[-1]}"]
    if rc == 2:
        lines = stderr.strip().splitlines()
        problems = [] if len(lines) == 1 else [f"exit 2 with {len(lines)} stderr lines"]
        if lines and " failed: " in lines[-1]:
            problems.append(f"an unnamed failure: {lines[-1]}")
        asked = requested(case)
        if case.drawn["target"] not in REFUSED_TARGETS and alone is not None and len(asked) > 1:
            fine = [t for t in asked if alone(t) == 0]
            if fine:
                problems.append(f"exit 2 although {', '.join(fine)} alone is predicted: "
                                f"{lines[-1] if lines else ''}")
        return problems
    if rc != 0:
        return [f"exit {rc}: {stderr.strip()}"]
    if case.drawn["target"] in REFUSED_TARGETS:
        return [f"a target {case.drawn['target']} predicted"]
    return check_report(case, report)


def requested(case: Case) -> list[str]:
    """The tasks the answer must judge: those asked, else the CLI's choice on the ladder."""
    if case.drawn["asked"]:
        return case.tasks
    return select_tasks(["all"] if "--tasks all" in case.drawn["extra"] else None, case.obs)


def check_report(case: Case, report: dict | None) -> list[str]:
    if report is None:
        return ["exit 0 without a report"]
    problems = []
    tasks, unfit = report.get("tasks", {}), report.get("unpredictable", {})
    expected = requested(case)
    if not expected:
        problems.append("no task predicted")
    for task in expected:
        if task in unfit:
            if not unfit[task]:
                problems.append(f"{task}: unpredictable without a reason")
            continue
        e = tasks.get(task)
        if e is None:
            problems.append(f"{task}: missing from the report")
            continue
        problems += _check_task(task, e, case.method)
    for path, v in _numbers(report):
        if not math.isfinite(v):
            problems.append(f"{path} = {v}")
    return problems


def _check_task(task: str, e: dict, method: str) -> list[str]:
    out = []
    for key, why in (("status", "reasons"), ("loss_status", "loss_reasons")):
        if e.get(key) not in STATUSES:
            out.append(f"{task}: {key} {e.get(key)!r}")
        elif e[key] != "ok" and not e.get(why):
            out.append(f"{task}: {key} {e[key]} without reasons")
    p = e["predicted"]
    if not all(isinstance(p[k], int | float) and math.isfinite(p[k]) for k in
               ("acc", "low", "high", "loss", "loss_low", "loss_high")):
        return out + [f"{task}: a prediction that is not a finite number: {p}"]
    if not p["low"] - TOL <= p["acc"] <= p["high"] + TOL:
        out.append(f"{task}: acc {p['acc']} outside [{p['low']}, {p['high']}]")
    if not p["loss_low"] * (1 - TOL) <= p["loss"] <= p["loss_high"] * (1 + TOL):
        out.append(f"{task}: loss {p['loss']} outside [{p['loss_low']}, {p['loss_high']}]")
    if not all(0 <= p[k] <= 1 for k in ("acc", "low", "high")):
        out.append(f"{task}: accuracy outside [0, 1]: {p['low']}, {p['acc']}, {p['high']}")
    if p["loss"] <= 0:
        out.append(f"{task}: loss {p['loss']} <= 0")
    if e.get("status") == "ok" and (p["high"] - p["low"]) / 2 > OK_HALFWIDTH[method]:
        out.append(f"{task}: ok with an interval +-{(p['high'] - p['low']) / 2:.3f}")
    return out


def _numbers(obj, path: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        yield path, obj
