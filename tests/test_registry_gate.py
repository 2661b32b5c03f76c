"""Predictions with lineage, target evaluations and the drift gate (accuracy and loss modes)."""

from __future__ import annotations

import json
import os
import re
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
    target_eval_lm_eval,
)

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.laws.fitter import ChainedFitter
from taskladder.registry.gate import EXPERIMENT, record_evaluation, run_gate
from taskladder.registry.laws import register_fit
from taskladder.registry.predictions import (
    VALUES,
    predict_from_registry,
    registered_predictions,
)

ROOT = Path(__file__).resolve().parent.parent
NAME = TARGET["name"]


@pytest.fixture
def store(tmp_path):
    return store_copy(registered_template(), tmp_path)


def _fit_prediction(task: str) -> dict[str, float]:
    return {k: float(v) for k, v in fits()[task].predict(TARGET["N"], TARGET["D"]).items()}


def _shifted(acc_points: dict[str, float], bpb_factor: float = 1.0) -> tuple[dict, dict]:
    """Accuracies `acc_points` below the fit's prediction, bpb = predicted loss / factor."""
    acc = {t: _fit_prediction(t)["acc"] - acc_points[t] / 100 for t in TASKS}
    bpb = {t: _fit_prediction(t)["loss"] / bpb_factor for t in TASKS}
    return acc, bpb


def test_prediction_is_registered_per_task_with_its_law_version(store):
    preds = registered_predictions(store, NAME)
    assert list(preds) == list(TASKS)
    for task, p in preds.items():
        want = _fit_prediction(task)  # the registry keeps the accuracy and loss with intervals
        assert p.values == {k: want[k] for k in VALUES}
        assert (p.N, p.D, p.acc_metric, p.shift) == (TARGET["N"], TARGET["D"], "acc_norm", None)
        assert p.law_uri == f"models:/taskladder-law-{task}/1"
        assert p.loss_metric == f"{task}/bpb"  # the synthetic ladder's feature is the task's bpb
        assert p.assessment.status == "ok"  # registered without a status
    again = predict_from_registry(TARGET, list(TASKS), store=store)
    assert {t: p.run_id for t, p in again.items()} == {t: p.run_id for t, p in preds.items()}


def test_a_refit_that_moves_the_prediction_is_flagged(store):
    before = registered_predictions(store, NAME)["arc_easy"].values
    ladder = synthetic_ladder(seed=7)
    refit = ChainedFitter("paper", n_bootstrap=10).fit(ladder, "arc_easy")
    register_fit(refit, store=store, observations=ladder)
    moved = predict_from_registry(TARGET, ["arc_easy"], store=store)["arc_easy"]
    after = {k: float(v) for k, v in refit.predict(TARGET["N"], TARGET["D"]).items()}
    assert moved.law_uri == "models:/taskladder-law-arc_easy/2"
    assert moved.shift == pytest.approx(100 * (after["acc"] - before["acc"]), abs=1e-12)
    loss_pct = 100 * (after["loss"] - before["loss"]) / before["loss"]
    assert moved.loss_shift == pytest.approx(loss_pct, rel=1e-9) and moved.loss_shift != 0
    small = abs(moved.shift) / 2
    verdict = run_gate(NAME, max_shift=small, predictions_only=True, store=store)
    status = {r["task"]: r["status"] for r in verdict["rows"]}
    assert status == {"arc_easy": "SHIFT", "piqa": "ok"} and not verdict["passed"]
    assert run_gate(NAME, max_shift=2 * abs(moved.shift), predictions_only=True,
                    store=store)["passed"]
    tiny = f"{abs(loss_pct) / 2}%"
    verdict = run_gate(NAME, metric="loss", max_shift=tiny, predictions_only=True, store=store)
    assert [r["status"] for r in verdict["rows"]] == ["SHIFT", "ok"]


def test_evaluation_without_a_predicted_task_writes_nothing(store, tmp_path):
    csv = target_eval_csv(tmp_path / "eval.csv", {"arc_easy": 0.9}, tasks=["arc_easy"])
    lacks = r"lacks predicted task\(s\) piqa \(acc_norm or piqa/bpb\)"
    with pytest.raises(InputError, match=lacks):
        record_evaluation(csv, target=NAME, store=store)
    assert store.client.get_experiment_by_name(EXPERIMENT) is None
    with pytest.raises(InputError, match="no registered prediction"):
        record_evaluation(csv, target="other", store=store)


def test_gate_passes_within_tolerance_and_fails_on_drift(store, tmp_path, capsys):
    acc, _ = _shifted({"arc_easy": 1.0, "piqa": -1.0})
    close = target_eval_csv(tmp_path / "close.csv", acc)
    uri = ["--tracking-uri", store.uri]
    assert main(["check-target", *uri, "--target", NAME, "--actual", str(close)]) == 0
    out = capsys.readouterr().out
    assert "evaluation of big-1xC recorded" in out and "+1.00" in out and "-1.00" in out
    assert main(["gate", *uri, "--tolerance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "gate: PASS (0 of 2 rows outside tolerance; acc 1.5 points" in out
    assert main(["gate", *uri, "--tolerance", "0.5", "--json", str(tmp_path / "v.json")]) == 1
    assert "gate: FAIL (2 of 2 rows" in capsys.readouterr().out
    saved = json.loads((tmp_path / "v.json").read_text())
    assert not saved["passed"] and [r["status"] for r in saved["rows"]] == ["DRIFT", "DRIFT"]
    rows = {r["task"]: r for r in run_gate(NAME, tolerance=1.5, store=store)["rows"]}
    assert rows["arc_easy"]["error"] == pytest.approx(1.0)
    assert rows["piqa"]["error"] == pytest.approx(-1.0)


def test_the_verdict_is_recorded_on_the_evaluation_the_predictions_and_the_laws(store,
                                                                                tmp_path):
    acc, _ = _shifted({"arc_easy": 1.0, "piqa": -3.0})
    record_evaluation(target_eval_csv(tmp_path / "a.csv", acc), target=NAME, store=store)
    verdict = run_gate(NAME, tolerance=2, store=store)
    assert "not_recorded" not in verdict
    evaluation = store.client.get_run(verdict["evaluations"][NAME]).data
    assert evaluation.tags["gate/verdict"] == "drift" and evaluation.metrics["gate/passed"] == 0
    assert (evaluation.tags["gate/arc_easy"], evaluation.tags["gate/piqa"]) == ("pass", "drift")
    assert evaluation.tags["gate/tolerance"] == "2 points"
    assert evaluation.metrics["gate/piqa/error"] == pytest.approx(-3.0)
    for task, want in (("arc_easy", "pass"), ("piqa", "drift")):
        row = next(r for r in verdict["rows"] if r["task"] == task)
        pred = store.client.get_run(row["prediction_run"]).data
        assert pred.tags["gate/verdict"] == want and pred.tags["gate/metric"] == "acc"
        assert pred.metrics["gate/error"] == pytest.approx(row["error"])
        mv = store.client.get_model_version(f"taskladder-law-{task}", "1")
        assert mv.tags["gate/verdict"] == want
        first = mv.description.splitlines()[0]
        assert first.startswith(f"Gate {want.upper()}: big-1xC acc_norm error {row['error']:+.2f}")
        assert "tolerance 2 points" in first
        assert store.client.get_run(mv.run_id).data.metrics["gate/error"] == row["error"]
    run_gate(NAME, tolerance=5, store=store)  # gated again: the line is replaced, not added
    mv = store.client.get_model_version("taskladder-law-piqa", "1")
    assert mv.description.startswith("Gate PASS") and mv.description.count("Gate ") == 1


def test_interval_tolerance(store, tmp_path):
    p = registered_predictions(store, NAME)
    inside = {t: (x.values["acc_low"] + x.values["acc"]) / 2 for t, x in p.items()}
    record_evaluation(target_eval_csv(tmp_path / "in.csv", inside), target=NAME, store=store)
    assert run_gate(NAME, tolerance="interval", store=store)["passed"]
    outside = {t: x.values["acc_high"] + 1e-4 for t, x in p.items()}
    record_evaluation(target_eval_csv(tmp_path / "out.csv", outside), target=NAME, store=store)
    verdict = run_gate(NAME, tolerance="interval", store=store)
    assert [r["status"] for r in verdict["rows"]] == ["DRIFT", "DRIFT"]
    wide = max(100 * (x.values["acc_high"] - x.values["acc"]) for x in p.values()) + 0.5
    assert run_gate(NAME, tolerance=wide, store=store)["passed"]  # points mode still passes


def test_the_gate_gates_the_evaluation_being_checked_not_the_newest(store, tmp_path, capsys):
    """Evaluation A is close, B (recorded later) drifted: re-checking A gates A."""
    good = target_eval_csv(tmp_path / "a.csv", _shifted({"arc_easy": 1.0, "piqa": 1.0})[0])
    bad = target_eval_csv(tmp_path / "b.csv", _shifted({"arc_easy": 9.0, "piqa": 9.0})[0])
    run_a = record_evaluation(good, target=NAME, store=store)["eval_run"]
    run_b = record_evaluation(bad, target=NAME, store=store)["eval_run"]
    assert run_a != run_b
    verdict = run_gate(NAME, store=store)
    assert verdict["evaluations"] == {NAME: run_b} and not verdict["passed"]
    uri = ["--tracking-uri", store.uri, "--target", NAME]
    assert main(["gate", *uri, "--actual", str(good), "--json", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["evaluations"] == {NAME: run_a}
    assert "gate: PASS" in capsys.readouterr().out
    # A re-check makes A the most recently checked: the default follows it, and an explicit
    # evaluation wins over it.
    assert run_gate(NAME, store=store)["evaluations"] == {NAME: run_a}
    assert not run_gate(NAME, evaluation=run_b, store=store)["passed"]
    not_an_eval = registered_predictions(store, NAME)["piqa"].run_id
    with pytest.raises(InputError, match="not an evaluation of target 'big-1xC'"):
        run_gate(NAME, evaluation=not_an_eval, store=store)


def test_loss_mode_gates_the_predicted_task_loss_by_relative_error(store, tmp_path, capsys):
    acc, bpb = _shifted({"arc_easy": 20.0, "piqa": 20.0}, bpb_factor=1.03)  # loss 3% under
    record_evaluation(target_eval_csv(tmp_path / "e.csv", acc, bpb=bpb), target=NAME, store=store)
    verdict = run_gate(NAME, metric="loss", tolerance="5%", store=store)
    assert verdict["passed"] and verdict["metric"] == "loss" and verdict["tolerance"] == 5.0
    for row in verdict["rows"]:
        assert row["metric"] == f"{row['task']}/bpb"
        assert row["predicted"] == _fit_prediction(row["task"])["loss"]
        assert row["actual"] == bpb[row["task"]]
        assert row["error"] == pytest.approx(3.0, rel=1e-9)
    assert not run_gate(NAME, store=store)["passed"]  # 20 points off in accuracy
    uri = ["--tracking-uri", store.uri]
    assert main(["gate", *uri, "--metric", "loss", "--tolerance", "5%"]) == 0
    assert "gate: PASS (0 of 2 rows outside tolerance; loss 5%, max shift 2%)" in \
        capsys.readouterr().out
    assert main(["gate", *uri, "--metric", "loss", "--tolerance", "2%"]) == 1
    inside = {t: (p.values["loss"] + p.values["loss_high"]) / 2
              for t, p in registered_predictions(store, NAME).items()}
    record_evaluation(target_eval_csv(tmp_path / "i.csv", acc, bpb=inside), target=NAME,
                      store=store)
    assert run_gate(NAME, metric="loss", tolerance="interval", store=store)["passed"]


def test_loss_mode_without_a_measured_loss_is_missing(store, tmp_path):
    record_evaluation(target_eval_csv(tmp_path / "e.csv", _shifted({"arc_easy": 0, "piqa": 0})[0]),
                 target=NAME, store=store)
    verdict = run_gate(NAME, metric="loss", store=store)
    assert [r["status"] for r in verdict["rows"]] == ["MISSING", "MISSING"]
    assert not verdict["passed"] and run_gate(NAME, store=store)["passed"]


@pytest.mark.parametrize("argv, message", [
    (["--metric", "bpb"], "--metric 'bpb': expected acc or loss"),
    (["--tolerance", "5%"], "--tolerance '5%': a relative tolerance is for the loss metric"),
    (["--metric", "loss", "--tolerance", "5"], "--tolerance '5': the loss metric takes a "
                                               "relative amount (e.g. 5%)"),
    (["--metric", "loss", "--tolerance", "0%"], "--tolerance '0%': expected percent in (0, 100]"),
    (["--tolerance", "five"], "--tolerance 'five': expected points in (0, 100] or 'interval'"),
    (["--metric", "loss", "--max-shift", "2"], "--max-shift '2': the loss metric takes a "
                                               "relative amount"),
])
def test_bad_gate_rule_is_one_line_and_exit_2(store, capsys, argv, message):
    assert main(["gate", "--tracking-uri", store.uri, "--target", NAME, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taskladder: error: ") and err.count("\n") == 1
    assert message in err


def test_gate_usage_errors_exit_2(store, capsys):
    uri = ["--tracking-uri", store.uri]
    assert main(["gate", *uri]) == 2
    assert "no target evaluation recorded" in capsys.readouterr().err
    assert main(["gate", *uri, "--target", NAME]) == 2
    assert "no evaluation recorded" in capsys.readouterr().err
    assert main(["gate", *uri, "--target", "nobody", "--predictions-only"]) == 2
    assert "no registered prediction" in capsys.readouterr().err


def _workflow_env(workflow: dict) -> dict[str, str]:
    """The job's env with each `${{ a || 'default' }}` expression at its default."""
    env = workflow["jobs"]["gate"]["env"]
    return {k: re.sub(r"\$\{\{.*\|\|\s*'([^']*)'\s*\}\}", r"\1", str(v)) for k, v in env.items()}


def test_the_drift_gate_workflow_in_a_user_repository(store, tmp_path):
    """Runs the workflow's own steps (its env defaults, its gate command) in a repository laid
    out as the workflow expects: a passing evaluation exits 0, a drifted one 1 with the verdict
    kept; the install step asks for the core without extras."""
    workflow = yaml.safe_load((ROOT / "ci" / "drift-gate.yml").read_text())
    steps = workflow["jobs"]["gate"]["steps"]
    env = _workflow_env(workflow)
    install = next(s["run"] for s in steps if "pip install" in s.get("run", ""))
    package = subprocess.run(["bash", "-c", f"echo {install.split('install', 1)[1]}"],
                             env=env, capture_output=True, text=True).stdout.strip()
    assert package == "taskladder"  # the core: no [extra]
    gate = next(s["run"] for s in steps if "taskladder gate" in s.get("run", ""))
    repo = tmp_path / "repo"
    (repo / "registry").mkdir(parents=True)
    store_copy(registered_template(), repo / "registry")
    env.update(GATE_TARGET=NAME, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    tolerance = float(env["GATE_TOLERANCE"])
    results = repo / env["GATE_RESULTS"]
    target_eval_lm_eval(results, _shifted({t: tolerance - 1 for t in TASKS})[0])
    done = subprocess.run(["bash", "-c", gate], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((repo / "gate.json").read_text())["passed"] is True
    target_eval_lm_eval(results, _shifted({t: tolerance + 1 for t in TASKS})[0])
    done = subprocess.run(["bash", "-c", gate], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "DRIFT" in done.stdout
    assert json.loads((repo / "gate.json").read_text())["passed"] is False


def test_the_gate_imports_no_training_or_evaluation_engine(store, tmp_path):
    """The core install has no torch: a full gate run must not import it (or lm-eval,
    olmo-core, transformers)."""
    csv = target_eval_csv(tmp_path / "e.csv", _shifted({"arc_easy": 1, "piqa": 1})[0])
    code = ("import sys; from taskladder.cli import main; "
            f"rc = main(['gate', '--tracking-uri', {store.uri!r}, '--target', {NAME!r}, "
            f"'--actual', {str(csv)!r}]); "
            "heavy = sorted(m for m in ('torch', 'lm_eval', 'olmo_core', 'transformers') "
            "if m in sys.modules); print('HEAVY', heavy); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
