"""The registry at team scale: everything through an `mlflow server` on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from registry_support import (
    TARGET,
    TASKS,
    fits,
    mlflow_server,
    postgres_database,
    register_all,
    synthetic_ladder,
    target_eval_csv,
)

from taskladder.cli import main
from taskladder.registry.ladder_runs import read_ladder
from taskladder.registry.laws import load_law, model_name, register_fit
from taskladder.registry.predictions import registered_predictions
from taskladder.registry.store import CLAIM_PREFIX, open_store

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path):
    with mlflow_server(postgres_database("gate"), tmp_path) as url:
        yield url


def test_register_predict_and_gate_through_a_postgres_backed_server(server, tmp_path, capsys):
    store = open_store(server)
    register_all(store)
    assert read_ladder(store, "synthetic").content_hash() == synthetic_ladder().content_hash()
    preds = registered_predictions(store, TARGET["name"])
    for task in TASKS:  # the law's files went through the server's artifact store
        want = fits()[task].predict(TARGET["N"], TARGET["D"])
        assert preds[task].values["acc"] == float(want["acc"])
        law = load_law(task, store=store)
        assert law.predict({"N": [TARGET["N"]], "D": [TARGET["D"]]})["acc"][0] == float(want["acc"])
    acc = {t: p.values["acc"] - 0.02 for t, p in preds.items()}  # 2 points under
    close = target_eval_csv(tmp_path / "close.csv", acc)
    uri = ["--tracking-uri", server, "--target", TARGET["name"]]
    assert main(["gate", *uri, "--results", str(close), "--tolerance", "3"]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    assert main(["gate", *uri, "--results", str(close), "--tolerance", "1"]) == 1
    assert "gate: FAIL (2 of 2 rows" in capsys.readouterr().out
    # nothing is left half-made: one version per law, no claim experiment in the lists
    for task in TASKS:
        assert len(store.client.search_model_versions(f"name = '{model_name(task)}'")) == 1
    names = [e.name for e in store.client.search_experiments()]
    assert not [n for n in names if n.startswith(CLAIM_PREFIX)]


def _registrar(url: str, barrier, queue) -> None:
    try:
        ready = fits()  # fitted before the start, so that the registrations overlap
        barrier.wait(timeout=600)
        versions = register_fit(ready, store=open_store(url))
        queue.put({t: v.version for t, v in versions.items()})
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put(f"{type(exc).__name__}: {exc}")


def test_writers_registering_the_same_fit_at_once_make_one_version(server):
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["registry_support", "taskladder.registry.laws"])
    queue, barrier = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_registrar, args=(server, barrier, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=1800) for _ in procs]  # a guard against a hang only
    for p in procs:
        p.join(timeout=60)
    store = open_store(server)
    versions = {t: store.client.search_model_versions(f"name = '{model_name(t)}'")
                for t in TASKS}
    assert {t: len(v) for t, v in versions.items()} == {t: 1 for t in TASKS}
    assert results == [{t: int(v[0].version) for t, v in versions.items()}] * 4
