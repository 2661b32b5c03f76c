"""Predictions with lineage, target evaluations, the drift gate and its CI script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from registry_support import (
    TARGET,
    TASKS,
    fits,
    registered_template,
    store_copy,
    synthetic_ladder,
    target_eval_csv,
)

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.laws.chained import ChainedFitter
from taskladder.registry.gate import EXPERIMENT, check_target, run_gate
from taskladder.registry.laws import register_fit
from taskladder.registry.predictions import predict_from_registry, registered_predictions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    return store_copy(registered_template(), tmp_path)


def _predicted() -> dict[str, float]:
    return {t: float(fits()[t].predict(TARGET["N"], TARGET["D"])["acc"]) for t in TASKS}


def test_prediction_is_registered_per_task_with_its_law_version(store):
    preds = registered_predictions(store, TARGET["name"])
    assert list(preds) == list(TASKS)
    for task, p in preds.items():
        want = fits()[task].predict(TARGET["N"], TARGET["D"])
        assert p.values["acc"] == float(want["acc"])
        assert (p.values["acc_low"], p.values["acc_high"]) == (float(want["acc_low"]), float(want["acc_high"]))
        assert (p.N, p.D, p.acc_metric, p.shift) == (TARGET["N"], TARGET["D"], "acc_norm", None)
        assert p.law_uri == f"models:/taskladder-law-{task}/1"
    again = predict_from_registry(TARGET, list(TASKS), store=store)
    assert {t: p.run_id for t, p in again.items()} == {t: p.run_id for t, p in preds.items()}


def test_a_refit_that_moves_the_prediction_is_flagged(store):
    before = registered_predictions(store, TARGET["name"])["arc_easy"].values["acc"]
    ladder = synthetic_ladder(seed=7)
    refit = ChainedFitter("paper", n_bootstrap=10).fit(ladder, "arc_easy")
    register_fit(refit, store=store, observations=ladder)
    moved = predict_from_registry(TARGET, ["arc_easy"], store=store)["arc_easy"]
    after = float(refit.predict(TARGET["N"], TARGET["D"])["acc"])
    assert moved.law_uri == "models:/taskladder-law-arc_easy/2"
    assert moved.shift == pytest.approx(100 * (after - before), abs=1e-12) and moved.shift != 0
    small = abs(moved.shift) / 2
    verdict = run_gate(TARGET["name"], max_shift=small, predictions_only=True, store=store)
    status = {r["task"]: r["status"] for r in verdict["rows"]}
    assert status == {"arc_easy": "SHIFT", "piqa": "ok"} and not verdict["passed"]
    assert run_gate(TARGET["name"], max_shift=2 * abs(moved.shift), predictions_only=True,
                    store=store)["passed"]


def test_evaluation_without_a_predicted_task_writes_nothing(store, tmp_path):
    csv = target_eval_csv(tmp_path / "eval.csv", {"arc_easy": 0.9}, tasks=["arc_easy"])
    with pytest.raises(InputError, match=r"lacks predicted task\(s\) piqa \(acc_norm\)"):
        check_target(csv, target=TARGET["name"], store=store)
    assert store.client.get_experiment_by_name(EXPERIMENT) is None
    with pytest.raises(InputError, match="no registered prediction"):
        check_target(csv, target="other", store=store)


def test_gate_passes_within_tolerance_and_fails_on_drift(store, tmp_path, capsys):
    pred = _predicted()
    close = target_eval_csv(tmp_path / "close.csv", {t: v - 0.01 for t, v in pred.items()})
    uri = ["--tracking-uri", store.uri]
    assert main(["check-target", *uri, "--target", TARGET["name"], "--results", str(close)]) == 0
    out = capsys.readouterr().out
    assert "evaluation of big-1xC recorded" in out and "arc_easy" in out and "+1.00" in out
    assert main(["gate", *uri, "--tolerance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "gate: PASS" in out and out.count(" ok") == 2
    assert main(["gate", *uri, "--tolerance", "0.5", "--json", str(tmp_path / "v.json")]) == 1
    assert "gate: FAIL (2 of 2 rows" in capsys.readouterr().out
    assert (tmp_path / "v.json").is_file()
    preds = registered_predictions(store, TARGET["name"])
    inside = all(p.values["acc_low"] <= pred[t] - 0.01 <= p.values["acc_high"] for t, p in preds.items())
    assert main(["gate", *uri, "--tolerance", "interval"]) == (0 if inside else 1)

    verdict = run_gate(TARGET["name"], tolerance=1.5, store=store)
    row = {r["task"]: r for r in verdict["rows"]}["piqa"]
    assert row["error"] == pytest.approx(1.0) and row["status"] == "ok"


def test_interval_tolerance(store, tmp_path):
    p = registered_predictions(store, TARGET["name"])
    inside = {t: (x.values["acc_low"] + x.values["acc"]) / 2 for t, x in p.items()}
    check_target(target_eval_csv(tmp_path / "in.csv", inside), target=TARGET["name"], store=store)
    assert run_gate(TARGET["name"], tolerance="interval", store=store)["passed"]
    outside = {t: x.values["acc_high"] + 1e-4 for t, x in p.items()}
    check_target(target_eval_csv(tmp_path / "out.csv", outside), target=TARGET["name"], store=store)
    verdict = run_gate(TARGET["name"], tolerance="interval", store=store)
    assert [r["status"] for r in verdict["rows"]] == ["DRIFT", "DRIFT"]
    wide = max(100 * (x.values["acc_high"] - x.values["acc"]) for x in p.values()) + 0.5
    assert run_gate(TARGET["name"], tolerance=wide, store=store)["passed"]  # points mode still passes


def test_gate_usage_errors_exit_2(store, capsys):
    uri = ["--tracking-uri", store.uri]
    assert main(["gate", *uri]) == 2
    assert "no target evaluation recorded" in capsys.readouterr().err
    assert main(["gate", *uri, "--target", TARGET["name"]]) == 2
    assert "no evaluation recorded" in capsys.readouterr().err
    assert main(["gate", *uri, "--target", TARGET["name"], "--tolerance", "-1"]) == 2
    assert main(["gate", *uri, "--target", "nobody", "--predictions-only"]) == 2
    assert "no registered prediction" in capsys.readouterr().err


def test_ci_workflow_runs_the_documented_gate_script():
    wf = yaml.safe_load((ROOT / "ci" / "drift-gate.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in triggers
    job = wf["jobs"]["gate"]
    assert {"TASKLADDER_TRACKING_URI", "GATE_TARGET", "GATE_RESULTS"} <= set(job["env"])
    assert any(s.get("run") == "bash ci/gate.sh" for s in job["steps"])


def test_ci_gate_script_exit_codes(store, tmp_path):
    pred = _predicted()
    env = {**os.environ, "TASKLADDER_TRACKING_URI": store.uri, "GATE_TARGET": TARGET["name"],
           "TASKLADDER": str(Path(sys.executable).with_name("taskladder")), "GATE_TOLERANCE": "2"}
    script = [str(ROOT / "ci" / "gate.sh")]
    good = target_eval_csv(tmp_path / "good.csv", {t: v + 0.01 for t, v in pred.items()})
    done = subprocess.run(script, env={**env, "GATE_RESULTS": str(good)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "gate: PASS" in done.stdout
    bad = target_eval_csv(tmp_path / "bad.csv", {t: v - 0.05 for t, v in pred.items()})
    done = subprocess.run(script, env={**env, "GATE_RESULTS": str(bad)}, capture_output=True, text=True)
    assert done.returncode == 1 and "DRIFT" in done.stdout
    done = subprocess.run(script, env={**env, "GATE_TARGET": ""}, capture_output=True, text=True)
    assert done.returncode == 2 and "set GATE_TARGET" in done.stderr
