"""End to end: a tiny real ladder through every stage; a second run that skips everything
because every output verifies; a lost evaluation, a lost tracking store and a forced stage
that re-run exactly what they must; and the paper's released ladder predicting 7B-4T."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from training_support import TINY

from taskladder import stages
from taskladder.cli import main
from taskladder.common.echo import quiet
from taskladder.config import load_spec
from taskladder.laws.chained import ChainedFit
from taskladder.laws.plots import write_plots
from taskladder.outputs import Registered, TargetScored
from taskladder.pipeline import run_pipeline
from taskladder.verdict import exit_code, final_lines, measured

ALL = ["train", "evaluate", "observe", "register", "fit+predict", "target", "gate"]


def _run(spec, **kw):
    ctx, reports = run_pipeline(spec, stages.STAGES, echo=quiet, **kw)
    return ctx, {r.name: r for r in reports}


def _results(out):
    return {p: p.stat().st_mtime_ns for p in out.glob("evals/*/*/*/results_*.json")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny spec run once from nothing; the tests below read and re-run it in order."""
    root = tmp_path_factory.mktemp("tiny")
    spec_file = root / "tiny.yaml"
    spec_file.write_text(TINY.format(out=root / "out"))
    spec = load_spec(str(spec_file))
    stages.preflight(spec)
    ctx, reports = _run(spec)
    return spec, ctx, reports


@pytest.mark.e2e
def test_tiny_ladder_end_to_end(tiny):
    spec, ctx, reports = tiny
    assert list(reports) == ALL
    assert all(r.ran and r.why == "no earlier run" for r in reports.values())
    out = spec.out_dir()
    assert len(_results(out)) == 6 * 2  # 6 runs x 2 kept checkpoints
    pred = json.loads((out / "predictions.json").read_text())
    assert pred["target"]["name"] == "d96-0.02xC" and pred["target"]["N"] > 0
    piqa = pred["tasks"]["piqa"]["predicted"]
    assert 0 <= piqa["low"] <= piqa["acc"] <= piqa["high"] <= 1
    assert pred["laws"]["piqa"].startswith("models:/taskladder-law-piqa/")
    # the gate judged the target's own measured accuracy against the registered prediction
    target = ctx.outputs["target"]
    assert isinstance(target, TargetScored)
    acc, se = measured(target.observations(), "piqa", "acc_norm")
    entry = json.loads(Path(target.result).read_text())["results"]["ladder_piqa_rc"]
    assert (acc, se) == (entry["acc_norm,none"], entry["acc_norm_stderr,none"])
    verdict = json.loads((out / "gate.json").read_text())
    row = verdict["rows"][0]
    assert row["actual"] == pytest.approx(acc)
    assert row["predicted"] == pytest.approx(piqa["acc"])
    if row["status"] != "untrusted":  # an unpredictable task is neither pass nor drift
        assert (row["status"] == "ok") == (abs(row["error"]) <= 10)
    assert exit_code(ctx) == (0 if verdict["passed"] else 1)
    lines = "\n".join(final_lines(ctx, list(reports.values())))
    assert f"taskladder ui --tracking-uri sqlite:///{out / 'mlflow.db'}" in lines
    assert "Verdict for d96-0.02xC" in lines
    # the figures were redrawn once the target was measured: not the prediction-time drawing
    fits = {t: ChainedFit.from_dict(d)
            for t, d in json.loads((out / "fits.json").read_text())["fits"].items()}
    before = write_plots(out / "unmeasured", fits, ctx.outputs["observe"].observations(),
                         pred["target"], {k: v for k, v in pred.items() if k != "laws"})
    redrawn = {p.name: p.read_bytes() for p in (out / "plots").iterdir()}
    assert all(redrawn[p.name] != p.read_bytes() for p in before if p.name != "variance.png")
    run = ctx.store.client.get_run(ctx.outputs["fit+predict"].predictions["piqa"])
    local = ctx.store.client.download_artifacts(run.info.run_id, "plots/chained.png",
                                               str(out / "unmeasured"))
    assert Path(local).read_bytes() == redrawn["chained.png"]  # and so are the registry's


@pytest.mark.e2e
def test_ladder_runs_carry_the_tokenizer_and_corpus(tiny):
    """The registry's ladder runs name the data they were trained on (not "unknown")."""
    _, ctx, _ = tiny
    registered = ctx.outputs["register"]
    assert isinstance(registered, Registered)
    trained = ctx.outputs["train"]
    for run_id in registered.runs.values():
        params = ctx.store.call("get_run", run_id).data.params
        assert params["tokenizer"] == trained.tokenizer != "unknown"
        assert params["corpus_hash"] == trained.corpus_hash != "unknown"
        # and their training loss curve, step by step
        run = ctx.store.call("get_run", run_id)
        losses = ctx.store.call("get_metric_history", run_id, "train/loss")
        assert len(losses) >= 2 and all(m.value > 0 for m in losses), run.data.tags


@pytest.mark.e2e
def test_second_run_skips_everything_it_verified(tiny):
    spec, _, _ = tiny
    before = _results(spec.out_dir())
    _, reports = _run(spec)
    assert {n: (r.ran, r.why) for n, r in reports.items()} == {
        n: (False, "inputs unchanged, outputs verified") for n in ALL}
    assert _results(spec.out_dir()) == before


@pytest.mark.e2e
def test_a_lost_evaluation_is_scored_again_and_nothing_else(tiny):
    spec, _, _ = tiny
    before = _results(spec.out_dir())
    victim = sorted(before)[-1]
    victim.unlink()  # as if the run was killed while scoring this checkpoint
    _, reports = _run(spec)
    assert reports["evaluate"].ran and reports["evaluate"].why.startswith("outputs missing")
    assert str(victim) in reports["evaluate"].why
    after = _results(spec.out_dir())
    assert len(after) == 12 and victim not in after
    assert {p: t for p, t in after.items() if p in before} == {
        p: t for p, t in before.items() if p != victim}
    # the new results file changes the observe stage's inputs; the scores did not change
    assert not reports["train"].ran and reports["observe"].ran
    assert not reports["register"].ran and not reports["fit+predict"].ran


def _cli_run(spec) -> dict[str, str]:
    """`taskladder run SPEC` in a fresh process (no client caches); {stage: its "==" line}."""
    done = subprocess.run([sys.executable, "-m", "taskladder.cli", "run", spec.source],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    lines = [line[3:] for line in done.stdout.splitlines() if line.startswith("== ")]
    return dict(line.split(": ", 1) for line in lines)


@pytest.mark.e2e
def test_a_lost_tracking_store_reruns_registration_fits_and_gate(tiny):
    spec, _, _ = tiny
    for p in spec.out_dir().glob("mlflow.db*"):
        p.unlink()
    stages_run = _cli_run(spec)
    ran = [name for name, line in stages_run.items() if line.startswith("runs")]
    assert ran == ["register", "fit+predict", "gate"]
    assert "not in sqlite:///" in stages_run["register"]
    assert json.loads((spec.out_dir() / "gate.json").read_text())["rows"][0]["actual"] is not None


@pytest.mark.e2e
def test_force_reruns_a_stage_from_scratch(tiny):
    spec, _, _ = tiny
    fits = spec.out_dir() / "fits.json"
    before = fits.stat().st_mtime_ns
    _, reports = _run(spec, force=("fit+predict",))
    assert reports["fit+predict"].ran and reports["fit+predict"].why == "forced with --force"
    assert fits.stat().st_mtime_ns > before
    # the same data gives the same laws: the gate's inputs (the registered prediction) hold
    assert not reports["train"].ran and not reports["evaluate"].ran


def test_eval_settings_name_the_results_folder(tmp_path):
    """Scores made with one backend are never reused for another (nor other tasks/limits)."""
    spec = load_spec("cpu-micro").with_overrides(output_dir=str(tmp_path))
    keys = set()
    for change in ({}, {"backend": "hf"}, {"limit": 7}, {"tasks": ["piqa"]}):
        s = spec.with_overrides(evaluate={**spec.evaluate.model_dump(), **change})
        keys.add(json.dumps(stages._eval_settings(s), sort_keys=True))
    assert len(keys) == 4


PAPER_7B = {"mmlu": 48.38, "hellaswag": 82.52, "arc_challenge": 51.50, "arc_easy": 76.59,
            "piqa": 81.22, "csqa": 75.71, "socialiqa": 58.74, "openbookqa": 44.17}


@pytest.mark.e2e
def test_paper_import_predicts_7b_and_gates_it(olmo_ladder_dir, tmp_path, capsys):
    ladder = tmp_path / "ladder"
    shutil.copytree(olmo_ladder_dir, ladder)
    args = ["run", "paper-import", "--ladder", str(ladder), "--output", str(tmp_path / "o")]
    code = main(args)
    out = capsys.readouterr().out
    pred = json.loads((tmp_path / "o" / "predictions.json").read_text())["tasks"]
    for task, want in PAPER_7B.items():  # METHOD.md section 6, paper setting
        assert abs(100 * pred[task]["predicted"]["acc"] - want) < 0.1, task
        assert pred[task]["actual"]["acc"] > 0  # the released 7B row, read before fitting
    verdict = json.loads((tmp_path / "o" / "gate.json").read_text())
    drifted = {r["task"] for r in verdict["rows"] if r["status"] == "DRIFT"}
    assert drifted == {"arc_challenge", "arc_easy", "openbookqa"}  # errors > 5 points
    assert code == 1  # the gate failed, so the run does
    assert "Drift gate for 7B-4T" in out and "taskladder ui --tracking-uri" in out
    # an edited ladder file is new input: observe runs again (same numbers: nothing else does)
    csv = sorted(ladder.glob("*.csv"))[0]
    csv.write_text(csv.read_text())
    assert main(args) == 1
    lines = capsys.readouterr().out
    assert "observe      ran" in lines and "fit+predict  skipped" in lines
