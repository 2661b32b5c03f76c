"""Tracking store: URI resolution, bad stores reported in one line, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from registry_support import (
    TARGET,
    fits,
    mlflow_server,
    postgres_database,
    registered_template,
    store_copy,
    synthetic_ladder,
)

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.laws.fitter import ChainedFitter
from taskladder.registry.ladder_runs import experiment_name, log_ladder, registered_ladder
from taskladder.registry.laws import load_law, register_fit
from taskladder.registry.store import open_store, resolve_uri


def test_uri_precedence_and_relative_sqlite_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKLADDER_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_uri() == "http://127.0.0.1:5000"
    monkeypatch.setenv("TASKLADDER_TRACKING_URI", "sqlite:///sub/x.db")
    assert resolve_uri() == f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    assert resolve_uri("sqlite:///y.db") == f"sqlite:///{tmp_path / 'y.db'}"
    with pytest.raises(InputError, match="only file databases"):
        resolve_uri("sqlite:///:memory:")


def test_corrupted_store_is_one_clear_line_and_left_alone(tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="not an SQLite database"):
        open_store(f"sqlite:///{db}")
    code = main(["gate", "--tracking-uri", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("taskladder: error: tracking store") and err.count("\n") == 1
    assert db.read_bytes() == b"this is not a database" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_sqlite_file_without_mlflow_tables_is_refused(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(InputError, match="without MLflow's tables"):
        open_store(f"sqlite:///{db}")


def test_readers_do_not_create_a_store(tmp_path, capsys):
    db = tmp_path / "typo.db"
    assert main(["gate", "--tracking-uri", f"sqlite:///{db}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not db.exists()


def _writer(uri: str, i: int, runs: list[str], barrier, queue) -> None:
    """Writers start together: each opens the store and logs the run they all share (so all
    race to create the store, the experiment and that run), then its own run in three
    increments."""
    try:
        barrier.wait(timeout=600)
        store = open_store(uri)
        obs = synthetic_ladder(runs=(runs[i], runs[-1]))
        log_ladder(store, obs.where(run=runs[-1]), "concurrent")
        mine = obs.where(run=runs[i])
        for lo in (0, 400, 800):
            log_ladder(store, mine.where((mine.step > lo) & (mine.step <= lo + 400)), "concurrent",
                       run_params={runs[i]: {"D": repr(float(mine.D.max()))}})
        queue.put((i, "ok"))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put((i, f"{type(exc).__name__}: {exc}"))


@pytest.fixture(params=["sqlite", pytest.param("postgres-server", marks=pytest.mark.e2e)])
def new_store_uri(request, tmp_path) -> str:
    """A tracking URI with nothing behind it yet: a new SQLite file, or an `mlflow server` on a
    new PostgreSQL database (what a team shares)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlflow.db'}"
        return
    database = postgres_database("writers")
    with mlflow_server(database, tmp_path) as url:
        yield url


def test_eight_concurrent_writers_on_a_new_store_lose_nothing(new_store_uri):
    """8 processes create the store, the experiment and a shared run at once: all succeed, no
    record is lost or duplicated (the store reads back to exactly the ladder written)."""
    ladder = synthetic_ladder()
    runs = ladder.unique("run")
    assert len(runs) == 9
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["mlflow.store.tracking.sqlalchemy_store", "registry_support",
                                "mlflow.store.model_registry.sqlalchemy_store",
                                "taskladder.registry.ladder_runs"])
    queue, barrier = ctx.Queue(), ctx.Barrier(8)
    procs = [ctx.Process(target=_writer, args=(new_store_uri, i, runs, barrier, queue))
             for i in range(8)]
    for p in procs:
        p.start()
    # A guard against a hung writer only (no speed target): a loaded machine takes minutes.
    results = dict(queue.get(timeout=1800) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == {i: "ok" for i in range(8)}
    store = open_store(new_store_uri, create=False)
    exp = store.client.get_experiment_by_name(experiment_name("concurrent"))
    assert len(store.client.search_runs([exp.experiment_id])) == 9
    assert registered_ladder(store, "concurrent").content_hash() == ladder.content_hash()


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file() and "mlflow.db" not in p.name}


def test_a_read_only_store_is_called_read_only(tmp_path):
    """A real read-only mount (root ignores chmod): one line saying so, exit 2, nothing made."""
    import subprocess
    import sys

    ro = tmp_path / "ro"
    ro.mkdir()
    store_copy(registered_template(), ro)
    con = sqlite3.connect(ro / "mlflow.db")  # WAL, as taskladder makes its stores
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    con.close()  # no -wal/-shm left: reading now needs to create them
    before = sorted(p.name for p in ro.iterdir())
    cli = Path(sys.executable).with_name("taskladder")
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} || exit 77; "
              f"{cli} gate --tracking-uri sqlite:///{ro / 'mlflow.db'}")
    try:
        proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                              text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if proc.returncode == 77 or "unshare:" in proc.stderr:
        pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
    # SQLite may read it (then the gate says what the store lacks) or refuse: then "read-only"
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("taskladder: error: ") and "unreadable" not in proc.stderr
    if "tracking store" in proc.stderr:
        assert ": read-only (SQLite needs to write" in proc.stderr, proc.stderr
    assert sorted(p.name for p in ro.iterdir()) == before


def test_ui_on_a_copy_relocates_it_and_links_the_classic_runs_view(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    store_copy(registered_template(), out)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    original = _files(out)
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    capsys.readouterr()
    assert main(["ui", "--tracking-uri", uri, "--dry-run", "--", "--port", "8123"]) == 0
    got, err = capsys.readouterr()
    exp = open_store(uri).client.get_experiment_by_name("taskladder-predictions")
    where = f"experiments/{exp.experiment_id}" if exp else "experiments"
    assert err == f"open http://127.0.0.1:8123/#/{where}?workflowType=machine_learning\n"
    assert got.split()[1:] == ["ui", "--backend-store-uri", uri, "--port", "8123"]
    # opened once by taskladder, every artifact location names the copy (mlflow ui reads them)
    with sqlite3.connect(copy / "mlflow.db") as con:
        places = [r[0] for r in con.execute("SELECT artifact_location FROM experiments "
                                            "WHERE lifecycle_stage = 'active'")]
        places += [r[0] for r in con.execute("SELECT artifact_uri FROM runs")]
    assert places and all(p.startswith(copy.as_uri() + "/") for p in places), places
    assert _files(out) == original
    assert main(["ui", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", "--dry-run"]) == 2


def test_a_copied_output_folder_keeps_its_artifacts_and_writes_into_itself(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    store_copy(registered_template(), out)  # an output folder: mlflow.db beside mlartifacts/
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    away = out.rename(tmp_path / "away")  # the original is gone from where it was written
    original = _files(away)
    moved = open_store(f"sqlite:///{copy / 'mlflow.db'}")
    # every location names the copy, and no Default experiment points anywhere else
    assert [e.name for e in moved.client.search_experiments()] != [] and all(
        e.artifact_location.startswith(copy.as_uri() + "/mlartifacts/")
        for e in moved.client.search_experiments())
    assert "Default" not in {e.name for e in moved.client.search_experiments()}
    law = load_law("piqa", store=moved)  # the version's files are found in the copy
    want = fits()["piqa"].predict(TARGET["N"], TARGET["D"])
    got = law.predict(pd.DataFrame({"N": [TARGET["N"]], "D": [TARGET["D"]]}))
    assert got["acc"].iloc[0] == pytest.approx(float(want["acc"]))
    # a write into the copy lands in the copy (and the original is untouched)
    plot = tmp_path / "piqa_new.png"
    plot.write_bytes(b"\x89PNG new plot")
    refit = ChainedFitter("paper", n_bootstrap=10).fit(synthetic_ladder(seed=3), "piqa")
    version = register_fit(refit, store=moved, plots=[plot])["piqa"]
    run = moved.client.get_model_version("taskladder-law-piqa", str(version.version)).run_id
    assert (copy / "mlartifacts" / "taskladder-laws" / run / "artifacts" / "plots" /
            "piqa_new.png").is_file()
    assert _files(away) == original
    # the original, opened where it is now, is consistent too
    back = open_store(f"sqlite:///{away / 'mlflow.db'}")
    assert load_law("arc_easy", store=back).predict(
        pd.DataFrame({"N": [1e10], "D": [2e11]}))["acc"].iloc[0] > 0
