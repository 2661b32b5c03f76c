"""Shared pieces of the registry tests: a synthetic ladder, fits made from it, store copies.

A new MLflow SQLite store costs seconds (schema migrations), so one is made per session and
copied (sqlite backup) for each test; likewise the fits and their registration.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

from taskladder.laws.observations import Observations

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline and quiet

TASKS = ("arc_easy", "piqa")
TARGET = {"name": "big-1xC", "N": 3.2e9, "D": 6.4e10}
_CHANCE = {"arc_easy": 0.25, "piqa": 0.5}


def synthetic_ladder(seed: int = 0, runs: tuple[str, ...] | None = None) -> Observations:
    """3 sizes x 3 lengths of a known two-step law with a little noise, 12 checkpoints each;
    `runs` keeps some of them."""
    rng = np.random.default_rng(seed)
    recs = []
    for size, N in (("100M", 1e8), ("200M", 2e8), ("400M", 4e8)):
        for m in (1, 2, 5):
            run = f"{size}-{m}xC"
            for step in range(1, 13):
                D = 20.0 * m * N * step / 12
                flops = 6.0 * N * D
                row = {"run": run, "size": size, "N": N, "D": D, "step": step * 100, "flops": flops}
                loss_lm = 30.0 / N**0.2 + 400.0 / D**0.25 + 1.5
                recs.append({**row, "task": "lm", "metric": "ce_val", "value": loss_lm})
                for task in TASKS:
                    bpb = 20.0 / N**0.2 + 100.0 / D**0.25 + 0.5 + rng.normal(0, 0.003)
                    c = _CHANCE[task]
                    acc = (c - 1.0) / (1.0 + np.exp(-6.0 * (bpb - 1.3))) + 1.0
                    acc += rng.normal(0, 0.004)
                    recs.append({**row, "task": task, "metric": "bpb", "value": bpb})
                    recs.append({**row, "task": task, "metric": "acc_norm", "value": acc})
    obs = Observations.from_records(recs)
    return obs if runs is None else obs.where(run=list(runs))  # same noise whatever the subset


def target_eval_csv(path: Path, acc: dict[str, float], tasks=TASKS,
                    bpb: dict[str, float] | None = None) -> Path:
    """One checkpoint's evaluation of the target in the observation-table CSV format: the
    accuracy of each task and, when given, its bits per byte (the task loss the laws predict)."""
    t = TARGET
    lines = ["run,size,N,D,step,flops,task,metric,value"]
    head = f"{t['name']},big,{t['N']!r},{t['D']!r},1000,{6 * t['N'] * t['D']!r}"
    for task in tasks:
        lines.append(f"{head},{task},acc_norm,{acc[task]!r}")
        if bpb is not None:
            lines.append(f"{head},{task},bpb,{bpb[task]!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def target_eval_lm_eval(folder: Path, acc: dict[str, float],
                        bpb: dict[str, float] | None = None) -> Path:
    """The target's evaluation as an lm-eval results folder (what `taskladder eval` writes)."""
    t = TARGET
    results = {f"ladder_{task}_rc": {"acc_norm,none": acc[task],
                                     **({"bpb,none": bpb[task]} if bpb else {})}
               for task in acc}
    meta = {"run": t["name"], "size": "big", "N": t["N"], "D": t["D"], "step": 1000,
            "flops": 6 * t["N"] * t["D"]}
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("results_*.json"):
        old.unlink()
    path = folder / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps({"results": results, "taskladder": meta}))
    return path


def copy_db(src: Path, dst: Path) -> str:
    """A consistent copy of an SQLite store (WAL included); returns its URI."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    return f"sqlite:///{dst}"


def scratch() -> Path:
    d = Path(tempfile.mkdtemp(prefix="taskladder-registry-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def fits() -> dict:
    """The chained fits of the synthetic ladder (paper method, a small bootstrap)."""
    from taskladder.laws.chained import ChainedFitter

    obs = synthetic_ladder()
    return {t: ChainedFitter("paper", n_bootstrap=10).fit(obs, t) for t in TASKS}


@functools.cache
def empty_template() -> Path:
    """A new, empty store, made once per test process."""
    from taskladder.registry.store import open_store

    path = scratch() / "mlflow.db"
    open_store(f"sqlite:///{path}")
    return path


@functools.cache
def registered_template() -> Path:
    """A store holding the synthetic ladder, its fits (@current) and the target's prediction."""
    from taskladder.registry.ladder_runs import log_ladder
    from taskladder.registry.laws import register_fit
    from taskladder.registry.predictions import predict_from_registry
    from taskladder.registry.store import open_store

    path = scratch() / "mlflow.db"
    store = open_store(copy_db(empty_template(), path))
    obs = synthetic_ladder()
    log_ladder(store, obs, "synthetic")
    register_fit(fits(), store=store, observations=obs, ladder="synthetic")
    predict_from_registry(TARGET, list(TASKS), store=store)
    return path


def store_copy(template: Path, folder: Path):
    """A Store on a private copy of a template store."""
    from taskladder.registry.store import open_store

    return open_store(copy_db(template, folder / "mlflow.db"))
