"""Shared pieces of the registry tests: a synthetic ladder, fits made from it, store copies,
an `mlflow server` and the PostgreSQL behind it.

A new MLflow SQLite store costs seconds (schema migrations), so one is made per session and
copied (sqlite backup) for each test; likewise the fits and their registration.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

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
    from taskladder.laws.fitter import ChainedFitter

    obs = synthetic_ladder()
    return {t: ChainedFitter("paper", n_bootstrap=10).fit(obs, t) for t in TASKS}


@functools.cache
def empty_template() -> Path:
    """A new, empty store, made once per test process."""
    from taskladder.registry.store import open_store

    path = scratch() / "mlflow.db"
    open_store(f"sqlite:///{path}")
    return path


def register_all(store) -> None:
    """The synthetic ladder, its fits (@current) and the target's prediction, into `store`."""
    from taskladder.registry.ladder_runs import log_ladder
    from taskladder.registry.laws import register_fit
    from taskladder.registry.predictions import predict_from_registry

    obs = synthetic_ladder()
    log_ladder(store, obs, "synthetic")
    register_fit(fits(), store=store, observations=obs, ladder="synthetic")
    predict_from_registry(TARGET, list(TASKS), store=store)


@functools.cache
def registered_template() -> Path:
    """A store holding what `register_all` writes."""
    from taskladder.registry.store import open_store

    path = scratch() / "mlflow.db"
    register_all(open_store(copy_db(empty_template(), path)))
    return path


def store_copy(template: Path, folder: Path):
    """A Store on a private copy of a template store (its artifacts included)."""
    from taskladder.registry.store import open_store

    if (template.parent / "mlartifacts").is_dir():
        shutil.copytree(template.parent / "mlartifacts", folder / "mlartifacts")
    return open_store(copy_db(template, folder / "mlflow.db"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(backend_uri: str, folder: Path, seconds: float = 180) -> Iterator[str]:
    """An `mlflow server` on `backend_uri` (artifacts served from `folder`); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = folder / "mlflow-server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
             backend_uri, "--artifacts-destination", str(folder / "mlartifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + seconds
        while True:
            if server.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                pytest.fail(f"mlflow server exited with {server.returncode}: {' | '.join(tail)}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow server not healthy after {seconds} s")
                time.sleep(0.3)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


@functools.cache
def postgres_cluster() -> Path:
    """A private PostgreSQL cluster on localhost, started by ci/postgres.sh (which installs
    Debian's postgresql when missing and run as root); stopped when the tests end. Skips only
    where it cannot be installed (not root, not installed)."""
    script = Path(__file__).resolve().parent.parent / "ci" / "postgres.sh"
    folder = Path(tempfile.mkdtemp(prefix="taskladder-pg-"))  # under /tmp: the postgres user
    done = subprocess.run(["bash", str(script), "start", str(folder), str(free_port())],
                          capture_output=True, text=True)
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    atexit.register(shutil.rmtree, folder, True)
    atexit.register(subprocess.run, ["bash", str(script), "stop", str(folder)])
    return folder


def postgres_database(prefix: str) -> str:
    """A new, empty database in the cluster; returns its SQLAlchemy URI."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    port = (postgres_cluster() / "postmaster.pid").read_text().splitlines()[3].strip()
    base = f"postgresql://postgres@127.0.0.1:{port}"
    subprocess.run(["psql", f"{base}/postgres", "-q", "-c", f'CREATE DATABASE "{name}"'],
                   check=True, capture_output=True)
    return f"{base.replace('postgresql:', 'postgresql+psycopg2:')}/{name}"


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """The headless browser the UI tests read pages with (skips the test where it is absent)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    return browser


def dump_dom(browser: str, tmp_path: Path, url: str) -> str:
    """The page's DOM once the single-page app has rendered (virtual time lets it fetch)."""
    return subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    ).stdout
