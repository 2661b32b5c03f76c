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
from taskladder.registry.gate import EXPERIMENT as EVALS
from taskladder.registry.gate import record_evaluation
from taskladder.registry.ladder_runs import registered_ladder
from taskladder.registry.laws import load_law, model_name, register_fit
from taskladder.registry.predictions import (
    latest_runs,
    predict_from_registry,
    registered_predictions,
)
from taskladder.registry.store import CLAIM_PREFIX, open_store

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path):
    with mlflow_server(postgres_database("gate"), tmp_path) as url:
        yield url


def test_register_predict_and_gate_through_a_postgres_backed_server(server, tmp_path, capsys):
    store = open_store(server)
    register_all(store)
    assert registered_ladder(store, "synthetic").content_hash() == synthetic_ladder().content_hash()
    preds = registered_predictions(store, TARGET["name"])
    for task in TASKS:  # the law's files went through the server's artifact store
        want = fits()[task].predict(TARGET["N"], TARGET["D"])
        assert preds[task].values["acc"] == float(want["acc"])
        law = load_law(task, store=store)
        assert law.predict({"N": [TARGET["N"]], "D": [TARGET["D"]]})["acc"][0] == float(want["acc"])
    acc = {t: p.values["acc"] - 0.02 for t, p in preds.items()}  # 2 points under
    close = target_eval_csv(tmp_path / "close.csv", acc)
    uri = ["--tracking-uri", server, "--target", TARGET["name"]]
    assert main(["gate", *uri, "--actual", str(close), "--tolerance", "3"]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    assert main(["gate", *uri, "--actual", str(close), "--tolerance", "1"]) == 1
    assert "gate: FAIL (2 of 2 rows" in capsys.readouterr().out
    # nothing is left half-made: one version per law, no claim experiment in the lists
    for task in TASKS:
        assert len(store.client.search_model_versions(f"name = '{model_name(task)}'")) == 1
    names = [e.name for e in store.client.search_experiments()]
    assert not [n for n in names if n.startswith(CLAIM_PREFIX)]


def _registrar(url: str, csv: str, barrier, queue) -> None:
    """Register the fits, predict the target, record its evaluation: each step started by all
    writers at once."""
    try:
        ready = fits()  # fitted before the start, so that the registrations overlap
        barrier.wait(timeout=600)
        store = open_store(url)
        versions = register_fit(ready, store=store)
        barrier.wait(timeout=600)
        preds = predict_from_registry(TARGET, list(TASKS), store=store)
        barrier.wait(timeout=600)
        evaluation = record_evaluation(csv, target=TARGET["name"], store=store)["eval_run"]
        queue.put(({t: v.version for t, v in versions.items()},
                   {t: p.run_id for t, p in preds.items()}, evaluation))
    except BaseException as exc:  # reported to the parent, which fails the test
        barrier.abort()  # the others stop waiting
        queue.put(f"{type(exc).__name__}: {exc}")


def test_writers_recording_the_same_thing_at_once_make_one_record(server, tmp_path):
    """4 writers register the same fits, the same prediction and the same evaluation at once:
    one law version per task, one prediction run per task, one evaluation run, which all
    writers return."""
    acc = {t: float(fits()[t].predict(TARGET["N"], TARGET["D"])["acc"]) for t in TASKS}
    csv = str(target_eval_csv(tmp_path / "eval.csv", acc))
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["registry_support", "taskladder.registry.laws"])
    queue, barrier = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_registrar, args=(server, csv, barrier, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=1800) for _ in procs]  # a guard against a hang only
    for p in procs:
        p.join(timeout=60)
    assert all(isinstance(r, tuple) for r in results), results
    store = open_store(server)
    versions = {t: store.client.search_model_versions(f"name = '{model_name(t)}'")
                for t in TASKS}
    assert {t: len(v) for t, v in versions.items()} == {t: 1 for t in TASKS}
    preds = registered_predictions(store, TARGET["name"])
    evals = store.client.search_runs(
        [store.client.get_experiment_by_name(EVALS).experiment_id])
    assert len(latest_runs(store, TARGET["name"])) == len(TASKS) and len(evals) == 1
    want = ({t: int(v[0].version) for t, v in versions.items()},
            {t: p.run_id for t, p in preds.items()}, evals[0].info.run_id)
    assert results == [want] * 4
