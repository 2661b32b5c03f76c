"""`taskladder fit --register` and `predict --register`: the law engine's outputs versioned."""

from __future__ import annotations

import pytest
from registry_support import TARGET, TASKS, empty_template, store_copy, synthetic_ladder

from taskladder.cli import main
from taskladder.registry.laws import model_name
from taskladder.registry.predictions import registered_predictions


@pytest.fixture
def ladder_csv(tmp_path):
    path = tmp_path / "ladder.csv"
    synthetic_ladder().to_csv(path)
    return path


def _law_args(ladder_csv) -> list[str]:
    return ["--ladder", str(ladder_csv), "--tasks", ",".join(TASKS), "--method", "paper",
            "--bootstrap", "5"]


def test_predict_register_records_laws_and_prediction_once(tmp_path, ladder_csv, capsys):
    store = store_copy(empty_template(), tmp_path)
    argv = ["predict", *_law_args(ladder_csv), "--target-n", repr(TARGET["N"]),
            "--target-d", repr(TARGET["D"]), "--register", "--tracking-uri", store.uri]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "from models:/taskladder-law-arc_easy/1" in err
    preds = registered_predictions(store, "N=3.2e+09,D=6.4e+10")
    assert list(preds) == list(TASKS)
    mv = store.client.get_model_version(model_name("piqa"), "1")
    runs = sorted(synthetic_ladder().unique("run"))
    assert mv.tags["ladder_runs"] == str(len(runs))  # how many; which: the dataset inputs
    inputs = store.client.get_run(mv.run_id).inputs.dataset_inputs
    assert sorted(d.dataset.name for d in inputs) == runs
    assert main(argv) == 0  # the same fit and prediction: nothing new
    assert len(store.client.search_model_versions(f"name = '{model_name('piqa')}'")) == 1
    again = registered_predictions(store, "N=3.2e+09,D=6.4e+10")
    assert {t: p.run_id for t, p in again.items()} == {t: p.run_id for t, p in preds.items()}


def test_fit_register_and_a_bad_store_fails_before_any_work(tmp_path, ladder_csv, capsys):
    store = store_copy(empty_template(), tmp_path)
    assert main(["fit", *_law_args(ladder_csv), "--register", "--tracking-uri", store.uri,
                 "--alias", "candidate"]) == 0
    for task in TASKS:
        mv = store.client.get_model_version_by_alias(model_name(task), "candidate")
        assert mv.version in (1, "1")
    capsys.readouterr()
    out = tmp_path / "fits.json"
    bad = tmp_path / "missing" / "mlflow.db"
    assert main(["fit", *_law_args(ladder_csv), "--json", str(out), "--register",
                 "--tracking-uri", f"sqlite:///{bad}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
