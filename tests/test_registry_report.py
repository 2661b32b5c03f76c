"""A prediction report registered whole: each task's status on its law version and prediction
run, a readable version description, the plots with both, and untrusted rows in the gate."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
from registry_support import (
    TARGET,
    TASKS,
    copy_db,
    empty_template,
    fits,
    scratch,
    store_copy,
    synthetic_ladder,
    target_eval_csv,
)

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.laws.report import build_report
from taskladder.registry.gate import record_evaluation, run_gate, trust_for
from taskladder.registry.laws import model_name
from taskladder.registry.predictions import EXPERIMENT, register_report, registered_predictions
from taskladder.registry.store import open_store

NAME = TARGET["name"]
REASONS = {"arc_easy": ["target beyond the ladder's feature range"],
           "piqa": ["accuracy within chance across the ladder", "degenerate fit"]}


def _report(with_status: bool = True) -> dict:
    ladder = synthetic_ladder()
    report = build_report(fits(), dict(TARGET), {"source": "synthetic", "format": "table",
                                                 "runs": ladder.unique("run"),
                                                 "data_hash": ladder.content_hash()})
    if with_status:  # what the law engine adds (issue 10); built here by hand
        report["tasks"]["arc_easy"].update(status="caution", reasons=REASONS["arc_easy"])
        report["tasks"]["piqa"].update(status="unpredictable", reasons=REASONS["piqa"])
    return report


@functools.cache
def _plots() -> tuple:
    folder = scratch()
    paths = (folder / "step1.png", folder / "arc_easy_detail.png")  # shared, one task's
    for p in paths:
        p.write_bytes(b"\x89PNG plot " + p.name.encode())
    return paths


@functools.cache
def _registered() -> Path:
    """A store holding the report (made once; each test works on a copy)."""
    path = scratch() / "mlflow.db"
    store = open_store(copy_db(empty_template(), path))
    register_report(_report(), fits(), observations=synthetic_ladder(), ladder="synthetic",
                    plots=list(_plots()), store=store)
    return path


@pytest.fixture
def store(tmp_path):
    return store_copy(_registered(), tmp_path)


def _artifacts(store, run_id: str) -> list[str]:
    return sorted(a.path for a in store.client.list_artifacts(run_id, "plots"))


def test_status_and_reasons_on_the_law_version_and_its_description(store):
    for task, status in (("arc_easy", "caution"), ("piqa", "unpredictable")):
        mv = store.client.get_model_version(model_name(task), "1")
        assert mv.tags["status"] == status
        assert mv.tags["reasons"] == "; ".join(REASONS[task])
        acc = fits()[task].predict(TARGET["N"], TARGET["D"])
        want = (f"Latest prediction: {NAME} (N=3.2e+09, D=6.4e+10): acc_norm "
                f"{100 * float(acc['acc']):.2f}% [{100 * float(acc['acc_low']):.2f}, "
                f"{100 * float(acc['acc_high']):.2f}]; {task}/bpb {float(acc['loss']):.4f}")
        assert mv.description.startswith(want)
        assert mv.description.endswith(f"Status: {status} ({'; '.join(REASONS[task])}).")


def test_status_on_the_prediction_runs(store):
    preds = registered_predictions(store, NAME)
    assert {t: p.assessment.status for t, p in preds.items()} == \
        {"arc_easy": "caution", "piqa": "unpredictable"}
    assert {t: list(p.assessment.reasons) for t, p in preds.items()} == REASONS
    run = store.client.get_run(preds["piqa"].run_id)
    assert run.data.tags["status"] == "unpredictable"


def test_plots_are_artifacts_of_the_law_versions_and_the_predictions(store):
    preds = registered_predictions(store, NAME)
    want = {"arc_easy": ["plots/arc_easy_detail.png", "plots/step1.png"],
            "piqa": ["plots/step1.png"]}
    for task in TASKS:
        law_run = store.client.get_model_version(model_name(task), "1").run_id
        assert _artifacts(store, law_run) == want[task]
        assert _artifacts(store, preds[task].run_id) == want[task]


def test_an_unpredictable_task_is_untrusted_in_the_gate(store, tmp_path, capsys):
    acc = {t: float(fits()[t].predict(TARGET["N"], TARGET["D"])["acc"]) for t in TASKS}
    acc["piqa"] -= 0.30  # 30 points off: drift, were the task not unpredictable
    record_evaluation(target_eval_csv(tmp_path / "e.csv", acc), target=NAME, store=store)
    verdict = run_gate(NAME, store=store)
    assert {r["task"]: r["status"] for r in verdict["rows"]} == \
        {"arc_easy": "ok", "piqa": "untrusted"}
    assert verdict["passed"] and not run_gate(NAME, strict=True, store=store)["passed"]
    uri = ["--tracking-uri", store.uri]
    assert main(["gate", *uri]) == 0
    out = capsys.readouterr().out
    assert "ok (caution)" in out and "untrusted" in out
    assert "gate: PASS (0 of 2 rows outside tolerance; 1 untrusted;" in out
    assert main(["gate", *uri, "--strict"]) == 1
    assert "gate: FAIL" in capsys.readouterr().out


def test_a_report_without_status_means_ok_and_a_bad_status_writes_nothing(tmp_path):
    store = store_copy(empty_template(), tmp_path)
    bad = copy.deepcopy(_report())
    bad["tasks"]["piqa"]["status"] = "great"
    with pytest.raises(InputError, match="status 'great', expected one of ok, caution"):
        register_report(bad, fits(), store=store)
    bad["tasks"]["piqa"].update(status="ok", reasons="one string")
    with pytest.raises(InputError, match="reasons must be a list of strings"):
        register_report(bad, fits(), store=store)
    assert store.client.get_experiment_by_name(EXPERIMENT) is None
    assert not store.client.search_registered_models()
    preds = register_report(_report(with_status=False), fits(), store=store)
    assert {t: (p.assessment.status, p.assessment.reasons) for t, p in preds.items()} == \
        {t: ("ok", ()) for t in TASKS}
    mv = store.client.get_model_version(model_name("piqa"), "1")
    assert mv.tags["status"] == "ok" and mv.description.endswith("Status: ok.")


def test_the_loss_gate_judges_a_task_whose_accuracy_alone_is_unpredictable():
    chance = ("ladder accuracy at chance: best 26.0 vs chance 25.0 (noise SD 2.0 points)",)
    assert trust_for("loss", "unpredictable", chance) == "ok"  # step 1 is judged
    assert trust_for("acc", "unpredictable", chance) == "unpredictable"
    assert trust_for("loss", "unpredictable", (*chance, "degenerate fit")) == "unpredictable"
    assert trust_for("loss", "caution", ()) == "caution"


def test_the_loss_status_rides_with_the_prediction_and_judges_the_loss_gate(tmp_path):
    """A task whose accuracy is unpredictable but whose loss is trusted: both statuses on the
    law version (tags and description) and the prediction run; the loss gate reads the loss's."""
    store = store_copy(empty_template(), tmp_path)
    report = _report()
    report["tasks"]["piqa"].update(loss_status="ok", loss_reasons=[])
    report["tasks"]["arc_easy"].update(loss_status="caution", loss_reasons=["a small ladder"])
    preds = register_report(report, fits(), store=store)
    mv = store.client.get_model_version(model_name("piqa"), "1")
    assert (mv.tags["status"], mv.tags["loss_status"]) == ("unpredictable", "ok")
    assert " Loss status: ok. Status: unpredictable (" in mv.description
    a = preds["arc_easy"].assessment
    assert (a.loss_status, a.loss_reasons) == ("caution", ("a small ladder",))
    back = registered_predictions(store, NAME)["piqa"].assessment
    assert (back.status, back.loss_status) == ("unpredictable", "ok")
    assert trust_for("loss", back.status, back.reasons, back.loss_status) == "ok"
    assert trust_for("acc", back.status, back.reasons, back.loss_status) == "unpredictable"
    assert trust_for("loss", "ok", (), "unpredictable") == "unpredictable"
