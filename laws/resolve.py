"""What a task's fit can use on a given ladder: checks, its features, concrete settings.

`auto` settings become concrete here (feature, step-1 form), and settings a ladder cannot
support (skip and smoothing on a final-only ladder) are turned off with a note, so that the
fitter, the backtests and the plots all read the same resolved settings.

Step-1 form by ladder shape: the (N, D) form where a size has runs of several lengths (or a
declared constant schedule makes every checkpoint a point) and there are >= 5 runs; else
the compute form (3 parameters: a model suite whose sizes share one length, 3-4 sizes).
"""

from __future__ import annotations

import numpy as np

from taskladder.common.errors import FieldError

from .observations import Observations, ShapeError
from .settings import LawSettings
from .tasks import TaskRows, accuracy_metric

# The compute form has 3 parameters; the (N, D) form 5, and it needs several lengths per size.
MIN_RUNS, ND_MIN_RUNS = 3, 5


def check_ladder(obs: Observations, task: str) -> None:
    """Enough runs and sizes for a fit, and the task's accuracy present."""
    sub = obs.where(task=task)
    if len(sub) == 0:
        raise FieldError("tasks", f"task {task!r} has no observations in the ladder")
    metric = accuracy_metric(task, sub)
    if len(sub.where(metric=metric)) == 0:
        raise FieldError("tasks", f"task {task!r} has no accuracy column ({metric}) in the ladder")
    sizes, runs = set(sub.N.tolist()), sub.unique("run")
    if len(sizes) < 2:
        raise ShapeError(
            f"task {task!r}: the ladder has {len(sizes)} model size(s); a fit needs at least 2"
        )
    if len(runs) < MIN_RUNS:
        raise ShapeError(
            f"task {task!r}: the ladder has {len(runs)} run(s); a step-1 fit needs at least "
            f"{MIN_RUNS}"
        )


def features(obs: Observations, task: str) -> list[str]:
    """The intermediate features the ladder has for a task, in `auto`'s order of preference:
    task bpb, TaskCE, then the LM losses (C4 first)."""
    have = set(obs.where(task=task).metric.tolist())
    out = [f for f in ("bpb", "task_ce") if f in have]
    lm = sorted(set(obs.where(task="lm").metric.tolist()), key=lambda m: (m != "ce_c4_en", m))
    return out + [m for m in lm if m.startswith("ce_")]


def resolve_settings(s: LawSettings, t: TaskRows) -> tuple[LawSettings, list]:
    """`auto` feature and step-1 form made concrete for this ladder; settings that cannot
    apply to it (skip and smoothing on a final-only ladder) turned off, with a note each."""
    notes = []
    obs, task = t.obs, t.task
    have = features(obs, task)
    if s.feature == "auto":
        if not have:
            raise FieldError(
                "feature",
                f"the ladder has no feature for task {task!r} (no bpb, task_ce or lm ce_<set>)",
            )
        s = s.replace(feature=have[0])
    elif s.feature not in have:
        raise FieldError(
            "feature",
            f"the ladder lacks {s.feature!r} for task {task!r} "
            f"(it has: {', '.join(have) or 'none'})",
        )
    acc = obs.finals(task, t.acc_metric, 1)
    per_run = obs.checkpoints_per_run(task, t.acc_metric)
    final_only = max(per_run.values()) <= 1  # one point per run for step 2
    lengths: dict[float, set] = {}
    for n, d in zip(acc.N.tolist(), acc.D.tolist(), strict=True):
        lengths.setdefault(n, set()).add(round(float(np.log2(d)), 1))
    several = max(map(len, lengths.values())) >= 2 or (
        s.schedule == "constant" and max(per_run.values()) >= 2
    )
    if s.step1_form == "auto":
        s = s.replace(step1_form="nd" if several and len(acc.runs) >= ND_MIN_RUNS else "compute")
    elif s.step1_form == "nd" and len(acc.runs) < ND_MIN_RUNS and s.schedule != "constant":
        notes.append(
            f"{len(acc.runs)} runs: too few for the (N, D) form of step 1 (5 parameters); "
            "fitted its compute form"
        )
        s = s.replace(step1_form="compute")
    if s.schedule == "constant" and s.step1_starts == "paper":  # the paper's start is for finals
        s = s.replace(step1_starts="grid")
    if final_only:
        changed = {
            k: v
            for k, v in (("skip", 0.0), ("window", 1), ("final_window", 1))
            if getattr(s, k) != v
        }
        if changed:
            notes.append(
                "final-only ladder: "
                + ", ".join(f"{k}={getattr(s, k)} cannot apply" for k in changed)
                + " (step 2 fits final points)"
            )
            s = s.replace(**changed)
    if s.step2_floor == "auto":  # final-only: the floor at chance (`fit_sigmoid_floored`)
        s = s.replace(step2_floor="chance" if final_only else "fitted")
    return s, notes


def concrete(s: LawSettings, t: TaskRows) -> LawSettings:
    auto = "auto" in (s.feature, s.step1_form, s.step2_floor)
    return resolve_settings(s, t)[0] if auto else s


def feature_of(s: LawSettings, task: str) -> tuple[str, str]:
    if s.feature in ("bpb", "task_ce"):
        return task, s.feature
    return "lm", s.feature
