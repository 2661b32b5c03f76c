"""The live watch: the real 7B trajectory fed checkpoint by checkpoint (a fault from 30% of
training on) into MLflow, and a real olmo-core run that the watch stops on drift."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from registry_support import chromium, dump_dom, mlflow_server
from training_support import TINY, corpus_file, tiny_spec
from trajectory_support import PLANNED, faulty

from taskladder.cli import main
from taskladder.common.facts import PAPER_LADDER
from taskladder.laws.readers import read_ladder, select_runs
from taskladder.laws.trajectory import fit_trajectory
from taskladder.laws.trajectory_plots import plot_watch
from taskladder.live_watch import LiveWatch
from taskladder.registry import watch_runs
from taskladder.registry.store import open_store


def test_live_watch_logs_the_band_by_step_and_fires_on_the_fault(olmo_ladder_dir, tmp_path):
    obs = read_ladder(olmo_ladder_dir)
    law = fit_trajectory(select_runs(obs, PAPER_LADDER), "hellaswag")
    target = faulty(select_runs(obs, "peteish7_eval_full").where(task="hellaswag"), worse=1.05)
    steps = sorted(set(target.step.tolist()))[::3]  # every third checkpoint: 62 of 186
    store = open_store(f"sqlite:///{tmp_path}/mlflow.db")
    live = LiveWatch({"hellaswag": law}, lambda hf: target.where(step=int(hf.name)),
                     "7B-5T", tmp_path, store=store)
    plan = SimpleNamespace(run="peteish7_eval_full", tokens=PLANNED, N=float(target.N[0]))
    verdicts = [live.judge(plan, s, Path(str(s))) for s in steps]
    live.close()
    D = {int(s): float(d) for s, d in zip(target.step, target.D, strict=True)}
    fault = next(i for i, s in enumerate(steps) if D[s] >= 0.3 * PLANNED)
    assert set(verdicts[:fault]) == {"pass"}
    assert "drift" in verdicts[fault:fault + 4] and verdicts[-1] == "drift"
    doc = json.loads((tmp_path / "watch.json").read_text())
    assert doc["tasks"]["hellaswag"]["verdict"] == "drift" and not doc["passed"]
    [rid] = live.runs.values()
    client = store.client
    for key in ("hellaswag/bpb", "hellaswag/bpb_pred", "hellaswag/bpb_low", "hellaswag/bpb_high",
                "hellaswag/acc_pred", "hellaswag/verdict", "verdict"):
        hist = client.get_metric_history(rid, key)
        assert len(hist) == len(steps) if key.endswith(("/bpb", "verdict")) else len(hist) > 0
    hist = {m.step: m.value for m in client.get_metric_history(rid, "hellaswag/verdict")}
    assert hist[steps[0]] == watch_runs.CODES["untrusted"]  # before 10% of the schedule
    assert hist[steps[-1]] == watch_runs.CODES["drift"]
    assert client.get_run(rid).info.status == "FINISHED"
    png = plot_watch(doc, tmp_path / "watch.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the gate reads the watch run back from MLflow: the same checkpoints, the same verdict
    argv = ["gate", "--ladder", str(olmo_ladder_dir), "--actual", f"mlflow:{rid}",
            "--tracking-uri", store.uri, "--schedule", "cosine=5T", "--tasks", "hellaswag",
            "--metric", "loss", "--json", str(tmp_path / "again.json")]
    assert main(argv) == 1
    again = json.loads((tmp_path / "again.json").read_text())["tasks"]["hellaswag"]
    assert [r["verdict"] for r in again["checkpoints"]] == \
        [r["verdict"] for r in doc["tasks"]["hellaswag"]["checkpoints"]]




class StopAtSecond:
    """A watch that records what it was handed and says drift from the second checkpoint."""

    stop_on_drift = True

    def __init__(self):
        self.seen = []

    def judge(self, plan, step: int, hf_dir: Path) -> str:
        self.seen.append((step, (hf_dir / "ladder_meta.json").is_file()))
        return "drift" if len(self.seen) >= 2 else "pass"


@pytest.mark.e2e
def test_the_watch_stops_a_real_run_on_drift(tmp_path, monkeypatch):
    from taskladder.common.errors import DriftStop
    from taskladder.training.ladder import train_ladder
    from taskladder.training.spec import load_ladder_spec

    corpus_file(tmp_path)
    monkeypatch.setitem(os.environ, "TASKLADDER_CACHE", str(tmp_path / "cache"))
    spec = load_ladder_spec(str(tiny_spec(tmp_path, "watched", steps=24, checkpoints=4)))
    watch = StopAtSecond()
    with pytest.raises(DriftStop) as stop:
        train_ladder(spec, progress=False, watch=watch)
    assert stop.value.step == 12
    assert watch.seen == [(6, True), (12, True)]  # each handed over exported
    run_dir = spec.out_dir() / "runs" / stop.value.run
    assert not (run_dir / "step18").exists() and not (run_dir / "result.json").exists()


def watched_spec(out: Path) -> dict:
    """test_pipeline_e2e's tiny ladder with a third size and 3 checkpoints a run (what the
    trajectory laws and their backtest need), its target watched while it trains."""
    data = yaml.safe_load(TINY.format(out=out))
    o = data["ladder"]["overrides"]
    o["sizes"].insert(1, dict(o["sizes"][0], name="d48", d_model=48))
    o["checkpoints_per_run"] = 3
    data["gate"] = {"enabled": True, "metric": "loss", "tolerance": "50%", "watch": True,
                    "patience": 2}
    return data


@pytest.mark.e2e
def test_the_pipeline_watches_the_target_it_trains(tmp_path):
    """A micro ladder (3 sizes x 3 lengths, 3 checkpoints a run) through every stage with
    gate.watch: the target's checkpoints judged as they were saved, in MLflow by step."""
    from taskladder import stages
    from taskladder.config import load_spec
    from taskladder.pipeline import run_pipeline

    spec_file = tmp_path / "watched.yaml"
    spec_file.write_text(yaml.safe_dump(watched_spec(tmp_path / "out")))
    spec = load_spec(str(spec_file))
    stages.preflight(spec)
    ctx, _ = run_pipeline(spec, stages.STAGES, echo=lambda line: None)
    out = spec.out_dir()
    doc = json.loads((out / "watch.json").read_text())
    rows = doc["tasks"]["piqa"]["checkpoints"]
    assert len(rows) >= 3 and doc["rule"]["patience"] == 2  # every checkpoint the target kept
    judged = [r for r in rows if r["verdict"] != "untrusted"]
    assert len(judged) >= 2 and judged[-1] is rows[-1]  # the ladder's grid starts near 1/3
    assert all(r["reason"].startswith("before") for r in rows if r not in judged)
    assert all(r["low"] <= r["predicted"] <= r["high"] for r in judged)
    assert (out / "plots" / "watch.png").is_file()
    store = open_store(f"sqlite:///{out / 'mlflow.db'}", create=False)
    exp = store.client.get_experiment_by_name(watch_runs.EXPERIMENT)
    [run] = store.client.search_runs([exp.experiment_id])
    hist = store.client.get_metric_history(run.info.run_id, "piqa/bpb")
    assert sorted(m.step for m in hist) == [r["step"] for r in rows]
    hist = store.client.get_metric_history(run.info.run_id, "piqa/bpb_pred")
    assert sorted(m.step for m in hist) == [r["step"] for r in judged]
    # the same watch from `train --target --ladder`: the pipeline's observations as the ladder
    spec_copy = tmp_path / "ladder.json"
    spec_copy.write_text(stages.ladder_training(spec).model_dump_json())
    trained = tmp_path / "train-target"
    argv = ["train", str(spec_copy), "--target", "--ladder", ctx.output(stages.Observed).table,
            "--tasks", "piqa", "--limit", "6", "--metric", "loss", "--tolerance", "50%",
            "--patience", "2", "--output", str(trained), "--no-progress"]
    assert main(argv) == 0
    again = json.loads((trained / "watch.json").read_text())["tasks"]["piqa"]["checkpoints"]
    assert [r["step"] for r in again] == [r["step"] for r in rows]
    assert [r["verdict"] for r in again] == [r["verdict"] for r in rows]
    assert (trained / "plots" / "watch.png").is_file()
    mine = open_store(f"sqlite:///{trained / 'mlflow.db'}", create=False)
    [trun] = mine.client.search_runs(
        [mine.client.get_experiment_by_name(watch_runs.EXPERIMENT).experiment_id])
    assert trun.info.status == "FINISHED"
    assert len(mine.client.get_metric_history(trun.info.run_id, "piqa/bpb")) == len(rows)
    # the pipeline's watch run in the MLflow UI (headless Chromium): the measured loss, the band
    # and the verdict are there
    browser = chromium()
    with mlflow_server(store.uri, tmp_path) as url:
        dom = dump_dom(browser, tmp_path,
                        f"{url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}")
    for key in ("piqa/bpb", "piqa/bpb_pred", "piqa/bpb_low", "piqa/bpb_high", "piqa/verdict"):
        assert key in dom, key
