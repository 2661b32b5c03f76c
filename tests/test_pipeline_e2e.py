"""End to end: a tiny real ladder through every stage, a second run that skips everything, a
killed evaluation that resumes, and the paper's released ladder predicting 7B-4T."""

from __future__ import annotations

import json

import pytest

from taskladder import stages
from taskladder.cli import main
from taskladder.config import load_spec
from taskladder.pipeline import run_pipeline

TINY = """
name: tiny
ladder:
  train: cpu-micro
  overrides:
    sizes:
      - {{name: d32, d_model: 32, n_layers: 1, n_heads: 1, hidden_size_multiple_of: 32, batch_sequences: 8}}
      - {{name: d64, d_model: 64, n_layers: 1, n_heads: 2, hidden_size_multiple_of: 32, batch_sequences: 8}}
    multipliers: [0.01, 0.02, 0.04]
    checkpoints_per_run: 2
    target: {{name: d96-0.02xC, multiplier: 0.02,
             size: {{name: d96, d_model: 96, n_layers: 1, n_heads: 3, hidden_size_multiple_of: 32,
                    batch_sequences: 8}}}}
eval: {{tasks: [piqa], limit: 6}}
fit: {{method: paper}}
target: {{name: d96-0.02xC, spec: ladder, train: true}}
gate: {{enabled: true, tolerance: 100}}
output_dir: {out}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the tiny spec once from nothing; the tests below read what it left."""
    root = tmp_path_factory.mktemp("tiny")
    spec_file = root / "tiny.yaml"
    spec_file.write_text(TINY.format(out=root / "out"))
    spec = load_spec(str(spec_file))
    stages.preflight(spec)
    ctx, reports = run_pipeline(spec, stages.STAGES, echo=lambda line: None)
    return spec, ctx, reports


@pytest.mark.e2e
def test_tiny_ladder_end_to_end(tiny_run):
    spec, ctx, reports = tiny_run
    assert [r.name for r in reports] == ["train", "evaluate", "observe", "register",
                                         "fit+predict", "target", "gate"]
    out = spec.out_dir()
    evals = sorted(out.glob("evals/*/*/*/results_*.json"))
    assert len(evals) == 6 * 2  # 6 runs x 2 kept checkpoints
    assert json.loads(evals[0].read_text())["taskladder"]["run"].startswith("d")
    pred = json.loads((out / "predictions.json").read_text())
    assert pred["target"]["name"] == "d96-0.02xC" and pred["target"]["N"] > 0
    piqa = pred["tasks"]["piqa"]["predicted"]
    assert 0 <= piqa["low"] <= piqa["acc"] <= piqa["high"] <= 1
    assert pred["laws"]["piqa"].startswith("models:/taskladder-law-piqa/")
    assert {p.rsplit("/", 1)[-1] for p in pred["plots"]} >= {"step1.png", "step2.png"}
    verdict = json.loads((out / "gate.json").read_text())
    assert verdict["passed"] and verdict["rows"][0]["actual"] is not None
    lines = "\n".join(stages.final_lines(ctx, reports))
    assert f"mlflow ui --backend-store-uri sqlite:///{out / 'mlflow.db'}" in lines
    assert "piqa" in lines
    assert stages.exit_code(ctx) == 0


@pytest.mark.e2e
def test_second_run_skips_finished_work(tiny_run):
    spec, _, _ = tiny_run
    out = spec.out_dir()
    before = {p: p.stat().st_mtime_ns for p in out.glob("evals/*/*/*/results_*.json")}
    _, reports = run_pipeline(spec, stages.STAGES, echo=lambda line: None)
    summary = {r.name: r.summary for r in reports}
    assert summary["evaluate"] == "0 checkpoints evaluated, 12 already done"
    assert summary["register"] == "ladder already registered"
    assert summary["fit+predict"] == "laws and prediction unchanged"
    assert "already evaluated" in summary["target"]
    after = {p: p.stat().st_mtime_ns for p in out.glob("evals/*/*/*/results_*.json")}
    assert after == before


@pytest.mark.e2e
def test_a_lost_evaluation_is_redone_and_nothing_else(tiny_run):
    spec, _, _ = tiny_run
    out = spec.out_dir()
    victim = sorted(out.glob("evals/*/*/*/results_*.json"))[-1]
    victim.unlink()  # as if the run was killed while scoring this checkpoint
    _, reports = run_pipeline(spec, stages.STAGES, echo=lambda line: None,
                              only=["train", "evaluate"])
    assert reports[-1].summary == "1 checkpoints evaluated, 11 already done"
    assert any(victim.parent.glob("results_*.json"))


PAPER_7B = {"mmlu": 48.38, "hellaswag": 82.52, "arc_challenge": 51.50, "arc_easy": 76.59,
            "piqa": 81.22, "csqa": 75.71, "socialiqa": 58.74, "openbookqa": 44.17}


@pytest.mark.e2e
def test_paper_import_predicts_7b_and_gates_it(olmo_ladder_dir, tmp_path, capsys):
    code = main(["run", "paper-import", "--ladder-path", str(olmo_ladder_dir),
                 "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    pred = json.loads((tmp_path / "out" / "predictions.json").read_text())["tasks"]
    for task, want in PAPER_7B.items():  # METHOD.md section 6, paper setting
        assert abs(100 * pred[task]["predicted"]["acc"] - want) < 0.1, task
        assert pred[task]["actual"]["acc"] > 0  # the released 7B row, read before fitting
    verdict = json.loads((tmp_path / "out" / "gate.json").read_text())
    drifted = {r["task"] for r in verdict["rows"] if r["status"] == "DRIFT"}
    assert drifted == {"arc_challenge", "arc_easy", "openbookqa"}  # errors > 5 points
    assert code == 1  # the gate failed, so the run does
    assert "Drift gate for 7B-4T" in out and "mlflow ui --backend-store-uri" in out
