"""Each registration is all-or-nothing as a user sees it (real MLflow on SQLite): a refused or
interrupted `register fit`, `predict --register` or `register ladder` leaves no RUNNING or
FINISHED orphan, a rerun cleans up what a killed one left, and the alias moves last."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from registry_support import (
    TARGET,
    TASKS,
    empty_template,
    fits,
    registered_template,
    store_copy,
    synthetic_ladder,
)

from taskladder.cli import main
from taskladder.registry.ladder_runs import experiment_name, log_ladder, registered_ladder
from taskladder.registry.laws import EXPERIMENT as LAWS
from taskladder.registry.laws import model_name
from taskladder.registry.predictions import EXPERIMENT as PREDICTIONS
from taskladder.registry.predictions import registered_predictions

PREDICT_TARGET = ["--target-n", repr(TARGET["N"]), "--target-d", repr(TARGET["D"])]


def _runs(store, experiment: str, view: int = 1) -> list:
    """Every run of `experiment` (view 1: active, 3: all, deleted too)."""
    exp = store.client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return store.client.search_runs([exp.experiment_id], run_view_type=view, max_results=1000)


def _statuses(store, experiment: str) -> list[str]:
    return sorted(r.info.status for r in _runs(store, experiment))


def _interrupt_at(store, method: str, nth: int = 1, when=lambda *a, **k: True):
    """Raise KeyboardInterrupt (what Ctrl-C raises) at the `nth` matching call of `method`."""
    real, seen = store.call, []

    def call(name, *args, **kwargs):
        if name == method and when(*args, **kwargs):
            seen.append(name)
            if len(seen) == nth:
                raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    store.call = call


@pytest.fixture
def ladder_csv(tmp_path):
    path = tmp_path / "ladder.csv"
    synthetic_ladder().to_csv(path)
    return path


def _predict(ladder_csv, store) -> list[str]:
    return ["predict", "--ladder", str(ladder_csv), "--tasks", ",".join(TASKS), "--method",
            "paper", "--bootstrap", "5", *PREDICT_TARGET, "--register",
            "--tracking-uri", store.uri]


def test_register_fit_of_a_task_with_a_slash_writes_nothing(tmp_path, capsys):
    store = store_copy(empty_template(), tmp_path)
    bad = {**fits()["arc_easy"].to_dict(), "task": "arc/easy"}
    path = tmp_path / "fits.json"
    path.write_text(json.dumps([fits()["piqa"].to_dict(), bad]))
    capsys.readouterr()  # MLflow's logging while the template store was made
    assert main(["register", "fit", str(path), "--tracking-uri", store.uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["taskladder: error: task 'arc/easy': use letters, digits, '_', '.', '-' "
                   "(max 100) to register it"]
    assert _runs(store, LAWS, view=3) == []  # not even the valid task's law
    assert store.client.search_registered_models() == []


def test_unwritable_artifact_folder_is_one_line_and_a_killed_run_is_swept(tmp_path, ladder_csv,
                                                                          capsys):
    store = store_copy(empty_template(), tmp_path)
    blocker = tmp_path / "mlartifacts"
    blocker.write_text("a file where the artifact folder goes")  # unwritable even for root
    capsys.readouterr()
    assert main(_predict(ladder_csv, store)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"artifact folder {blocker}: not writable" in err[0]
    assert _runs(store, LAWS, view=3) == [] and _runs(store, PREDICTIONS, view=3) == []
    blocker.unlink()
    # A registration killed outright (no handler runs) leaves its run RUNNING...
    killed = (f"from taskladder.registry.store import open_store; import os; s = open_store("
              f"{store.uri!r}); e = s.experiment_id({LAWS!r}); s.create_run(e, 'law-x', {{}}); "
              "os._exit(9)")
    done = subprocess.run([sys.executable, "-c", killed], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    assert _statuses(store, LAWS) == ["RUNNING"]
    # ...which the next registration removes, whatever else it writes.
    assert main(_predict(ladder_csv, store)) == 0
    assert _statuses(store, LAWS) == ["FINISHED"] * len(TASKS)
    assert _statuses(store, PREDICTIONS) == ["FINISHED"] * len(TASKS)


def test_ctrl_c_during_register_ladder_leaves_no_running_run_and_a_rerun_completes(tmp_path):
    store = store_copy(empty_template(), tmp_path)
    obs = synthetic_ladder()
    name = "interrupted"
    _interrupt_at(store, "log_batch", nth=3, when=lambda *a, **k: "metrics" in k)
    with pytest.raises(KeyboardInterrupt):
        log_ladder(store, obs, name)
    statuses = _statuses(store, experiment_name(name))
    assert "RUNNING" not in statuses and "FAILED" in statuses
    partial = registered_ladder(store, name)  # the interrupted runs are left out
    assert set(partial.unique("run")) < set(obs.unique("run"))
    del store.call  # the interrupt is over
    log_ladder(store, obs, name)
    assert _statuses(store, experiment_name(name)) == ["FINISHED"] * len(obs.unique("run"))
    assert registered_ladder(store, name).content_hash() == obs.content_hash()


def test_interrupted_predict_register_keeps_the_alias_on_a_law_with_its_prediction(tmp_path,
                                                                                 monkeypatch):
    store = store_copy(registered_template(), tmp_path)
    before = {t: store.client.get_model_version_by_alias(model_name(t), "current").version
              for t in TASKS}
    predicted = registered_predictions(store, TARGET["name"])
    refit = synthetic_ladder(seed=1)  # new ladder data: new law versions
    path = tmp_path / "ladder.csv"
    refit.to_csv(path)
    argv = _predict(path, store)
    from taskladder.registry import store as store_module

    opened = store_module.open_store

    def interrupted(uri=None, **kw):  # the CLI's store, interrupted at its 2nd prediction run
        s = opened(uri, **kw)
        exp = s.experiment_id(PREDICTIONS)
        _interrupt_at(s, "create_run", nth=2, when=lambda eid, *a, **k: eid == exp)
        return s

    monkeypatch.setattr(store_module, "open_store", interrupted)
    assert main(argv) == 130
    monkeypatch.undo()
    after = {t: store.client.get_model_version_by_alias(model_name(t), "current").version
             for t in TASKS}
    assert after == before  # new versions exist, but @current did not move to them
    assert len(store.client.search_model_versions(f"name = '{model_name('piqa')}'")) == 2
    assert "RUNNING" not in _statuses(store, PREDICTIONS)
    assert registered_predictions(store, TARGET["name"]) == predicted
    assert main(argv) == 0  # the rerun completes it: the alias moves with the predictions
    now = registered_predictions(store, "N=3.2e+09,D=6.4e+10")
    for task in TASKS:
        mv = store.client.get_model_version_by_alias(model_name(task), "current")
        assert mv.version != before[task] and now[task].law_uri.endswith(f"/{mv.version}")
