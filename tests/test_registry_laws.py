"""Fitted laws as registered-model versions: pyfunc round trip, idempotence, lineage, errors."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from registry_support import TASKS, fits, registered_template, store_copy, synthetic_ladder

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.laws.fitter import ChainedFitter
from taskladder.registry.ladder_runs import registered_run_ids
from taskladder.registry.laws import OUTPUT_COLUMNS, load_law, model_name, register_fit


@pytest.fixture
def store(tmp_path):
    return store_copy(registered_template(), tmp_path)


def test_pyfunc_round_trip_predicts_exactly_like_the_fit(store, monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # what a model consumer sets
        monkeypatch.setenv(var, store.uri)
    model = mlflow.pyfunc.load_model("models:/taskladder-law-arc_easy@current")
    table = pd.DataFrame({"N": [3_200_000_000, 1e8, 7e9], "D": [64_000_000_000, 2e9, 4e12]})
    got = model.predict(table)
    want = fits()["arc_easy"].predict(table["N"].to_numpy(float), table["D"].to_numpy(float))
    assert list(got.columns) == list(OUTPUT_COLUMNS)
    for col in OUTPUT_COLUMNS:
        assert np.array_equal(got[col].to_numpy(), want[col]), col
    assert (got["acc_low"] <= got["acc"]).all() and (got["acc"] <= got["acc_high"]).all()
    assert (got["acc_low"] < got["acc_high"]).any()  # the bootstrap gives a real interval


def test_version_holds_json_and_code_no_pickle(store):
    mv = store.client.get_model_version_by_alias(model_name("piqa"), "current")
    local = mlflow.artifacts.download_artifacts(mv.source)
    files = {p.name for p in Path(local).rglob("*") if p.is_file()}
    assert {"MLmodel", "law_model.py", "fit.json"} <= files
    assert not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files)


def test_tags_carry_method_lineage_and_fit_health(store):
    for task in TASKS:
        mv = store.client.get_model_version_by_alias(model_name(task), "current")
        fit = fits()[task]
        assert mv.tags["method"] == "paper"
        assert mv.tags["observations_hash"] == fit.data_hash
        assert mv.tags["degenerate"] == str(fit.flags["degenerate"]).lower()
        assert mv.tags["feature"] == f"{task}/bpb" and mv.tags["form"]
        assert "fit_errors" not in mv.tags and "flags" not in mv.tags  # JSON: artifacts
        assert all(len(v) <= 250 for v in mv.tags.values())
        local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, tracking_uri=store.uri,
                                                    artifact_path="fit_errors.json")
        errors = json.loads(Path(local).read_text())
        assert errors["step1"]["mean_abs_rel"] == fit.step1.errors["mean_abs_rel"]
        run = store.client.get_run(mv.run_id)
        assert run.data.metrics["step1/mean_abs_rel"] == fit.step1.errors["mean_abs_rel"]
        exp = store.client.get_experiment(run.info.experiment_id)
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # "Model training"
        alpha = fit.step1.params[fit.step1.names.index("alpha")]
        assert run.data.params["step1.alpha"] == repr(alpha)
        # lineage: each ladder run a dataset input linked to its MLflow run
        ladder = registered_run_ids(store, "synthetic")
        inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
        assert sorted(inputs) == sorted(synthetic_ladder().unique("run"))
        assert {n: d.source for n, d in inputs.items()} == \
            {n: f"runs:/{i}" for n, i in ladder.items()}


def test_same_fit_twice_adds_no_version_and_a_refit_moves_the_alias(store, tmp_path):
    again = register_fit(fits()["arc_easy"], store=store)["arc_easy"]
    assert (again.version, again.created) == (1, False)
    assert len(store.client.search_model_versions(f"name = '{model_name('arc_easy')}'")) == 1
    plot = tmp_path / "arc_easy_step1.png"
    plot.write_bytes(b"\x89PNG fake plot")
    refit = ChainedFitter("paper", n_bootstrap=10, seed=1).fit(synthetic_ladder(), "arc_easy")
    new = register_fit(refit, store=store, plots=[plot])["arc_easy"]
    assert (new.version, new.created) == (2, True)
    current = store.client.get_model_version_by_alias(model_name("arc_easy"), "current")
    assert current.version in (2, "2")
    run_id = store.client.get_model_version(model_name("arc_easy"), "2").run_id
    plots = [a.path for a in store.client.list_artifacts(run_id, "plots")]
    assert plots == ["plots/arc_easy_step1.png"]
    first = load_law("arc_easy", 1, store=store).predict(pd.DataFrame({"N": [1e9], "D": [1e11]}))
    assert first["acc"][0] == pytest.approx(float(fits()["arc_easy"].predict(1e9, 1e11)["acc"]),
                                            abs=0)


def test_observations_that_are_not_the_fits_input_are_refused(store):
    other = synthetic_ladder(seed=5)
    refit = ChainedFitter("paper").fit(synthetic_ladder(), "piqa")
    with pytest.raises(InputError, match="not the ones it was fitted on"):
        register_fit(refit, store=store, observations=other)
    assert len(store.client.search_model_versions(f"name = '{model_name('piqa')}'")) == 1


def test_unknown_model_or_alias_is_one_line(store, capsys):
    with pytest.raises(InputError, match="has no alias 'prod'"):
        load_law("arc_easy", "prod", store=store)
    with pytest.raises(InputError, match="'taskladder-law-mmlu' does not exist"):
        load_law("mmlu", store=store)
    code = main(["register", "alias", "--tracking-uri", store.uri, "--task", "piqa",
                 "--version", "9", "--alias", "prod"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "taskladder: error: registered model 'taskladder-law-piqa' has no version '9'\n"
    with pytest.raises(InputError, match="alias 'latest'"):
        register_fit(fits()["piqa"], store=store, alias="latest")


def test_cli_registers_a_fits_file_and_sets_aliases(store, tmp_path, capsys):
    path = tmp_path / "fits.json"
    refit = ChainedFitter("paper", n_bootstrap=4, seed=2).fit(synthetic_ladder(), "piqa")
    path.write_text(json.dumps({"piqa": refit.to_dict()}))
    assert main(["register", "fit", str(path), "--tracking-uri", store.uri,
                 "--alias", "candidate"]) == 0
    assert "taskladder-law-piqa version 2 @candidate: registered" in capsys.readouterr().out
    assert main(["register", "alias", "--tracking-uri", store.uri, "--task", "piqa",
                 "--version", "2", "--alias", "current"]) == 0
    current = store.client.get_model_version_by_alias(model_name("piqa"), "current")
    assert current.version in (2, "2")
    path.write_text('{"schema": "nope"}')
    assert main(["register", "fit", str(path), "--tracking-uri", store.uri]) == 2
    assert "unknown schema" in capsys.readouterr().err
