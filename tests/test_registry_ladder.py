"""Ladder results as MLflow runs: one per ladder run, curves by step, idempotent, any source."""

from __future__ import annotations

import json

import pytest
from registry_support import empty_template, store_copy, synthetic_ladder

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.laws.observations import Observations
from taskladder.laws.readers import read_ladder as read_source
from taskladder.laws.readers import select_runs
from taskladder.registry.ladder_runs import experiment_name, log_ladder, registered_ladder


@pytest.fixture
def store(tmp_path):
    return store_copy(empty_template(), tmp_path)


def _metric_rows(store, ladder: str) -> int:
    exp = store.client.get_experiment_by_name(experiment_name(ladder))
    runs = store.client.search_runs([exp.experiment_id])
    return sum(len(store.client.get_metric_history(r.info.run_id, k))
               for r in runs for k in r.data.metrics)


def test_one_run_per_ladder_run_with_params_and_curves(store):
    obs = synthetic_ladder()
    ids = log_ladder(store, obs, "syn", tokenizer="gpt2", corpus_hash="abc123")
    assert sorted(ids) == sorted(obs.unique("run"))
    run = store.client.get_run(ids["200M-5xC"])
    assert run.data.params == {"size": "200M", "N": "200000000.0",
                               "planned_D": repr(20.0 * 5 * 2e8),
                               "multiplier": "5", "tokenizer": "gpt2", "corpus_hash": "abc123"}
    curve = store.client.get_metric_history(run.info.run_id, "arc_easy/acc_norm")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == list(range(100, 1300, 100))
    assert {"lm/ce_val", "piqa/bpb", "D", "flops"} <= set(run.data.metrics)
    assert registered_ladder(store, "syn").content_hash() == obs.content_hash()


def test_logging_again_adds_nothing_and_new_checkpoints_extend_the_curves(store):
    obs = synthetic_ladder(runs=("100M-1xC",))
    early = obs.where(obs.step <= 600)
    first = log_ladder(store, early, "syn")
    rows = _metric_rows(store, "syn")
    assert log_ladder(store, early, "syn") == first
    assert _metric_rows(store, "syn") == rows
    assert log_ladder(store, obs, "syn") == first
    assert _metric_rows(store, "syn") == 2 * rows
    assert registered_ladder(store, "syn").content_hash() == obs.content_hash()


def test_a_changed_param_is_refused_before_any_metric(store):
    obs = synthetic_ladder(runs=("100M-1xC",))
    log_ladder(store, obs, "syn", tokenizer="gpt2")
    with pytest.raises(InputError, match="param tokenizer is 'gpt2' in the registry, got 'olmo'"):
        log_ladder(store, obs, "syn", tokenizer="olmo")
    with pytest.raises(InputError, match="ladder name"):
        log_ladder(store, obs, "bad name!")
    with pytest.raises(InputError, match="not registered"):
        registered_ladder(store, "absent")


def test_the_papers_released_ladder_registers_through_the_law_engines_reader(
        store, olmo_ladder_dir, capsys):
    assert main(["register", "ladder", "--ladder", str(olmo_ladder_dir),
                 "--ladder-name", "olmo-paper", "--runs", "190M-1xC,1B-10xC",
                 "--tracking-uri", store.uri]) == 0
    assert "2 ladder runs registered" in capsys.readouterr().out
    source = select_runs(read_source(olmo_ladder_dir), "190M-1xC,1B-10xC")
    back = registered_ladder(store, "olmo-paper")
    assert back.content_hash() == source.content_hash()
    exp = store.client.get_experiment_by_name(experiment_name("olmo-paper"))
    big = store.client.search_runs([exp.experiment_id],
                                   filter_string="tags.`taskladder.run` = '1B-10xC'")[0]
    assert big.data.params["multiplier"] == "10" and big.data.params["size"] == "1B"
    assert {"arc_easy/acc_norm", "arc_easy/bpb", "mmlu/bpb", "lm/ce_c4_en"} <= set(big.data.metrics)


def test_tokenizer_and_corpus_hash_come_from_the_caller_never_a_placeholder(store):
    """A ladder first logged without them (an import) gets them when the caller knows them
    (the pipeline passes the training tokenizer and corpus hash)."""
    obs = synthetic_ladder(runs=("100M-1xC",))
    (run_id,) = log_ladder(store, obs, "syn").values()
    params = store.client.get_run(run_id).data.params
    assert "tokenizer" not in params and "corpus_hash" not in params
    log_ladder(store, obs, "syn", tokenizer="allenai/dolma2-tokenizer", corpus_hash="c0ffee")
    params = store.client.get_run(run_id).data.params
    assert (params["tokenizer"], params["corpus_hash"]) == ("allenai/dolma2-tokenizer", "c0ffee")
    other = synthetic_ladder(runs=("200M-1xC",))
    path = store.db_path.parent / "other.csv"
    other.to_csv(path)
    assert main(["register", "ladder", "--ladder", str(path), "--ladder-name", "cli",
                 "--tracking-uri", store.uri,
                 "--tokenizer", "gpt2", "--corpus-hash", "abc"]) == 0
    exp = store.client.get_experiment_by_name(experiment_name("cli"))
    (run,) = store.client.search_runs([exp.experiment_id])
    assert (run.data.params["tokenizer"], run.data.params["corpus_hash"]) == ("gpt2", "abc")


def test_a_constant_question_count_is_a_param_and_reads_back_as_rows(store):
    obs = synthetic_ladder(runs=("100M-1xC",))
    counted = Observations.from_records(
        obs.records() + [{**r, "metric": "n_questions", "value": 200.0} for r in obs.records()
                         if r["task"] == "arc_easy" and r["metric"] == "bpb"])
    run_id = log_ladder(store, counted, "counted")["100M-1xC"]
    run = store.client.get_run(run_id)
    assert run.data.params["arc_easy/n_questions"] == "200.0"
    assert "arc_easy/n_questions" not in run.data.metrics  # no flat chart
    assert registered_ladder(store, "counted").content_hash() == counted.content_hash()


def test_the_training_loss_curve_is_a_metric_of_the_ladder_run_not_an_observation(store):
    obs = synthetic_ladder(runs=("100M-1xC",))
    curve = {step: 10.0 / (1 + step) ** 0.3 for step in range(0, 1201, 50)}
    run_id = log_ladder(store, obs, "trained", curves={"100M-1xC": curve})["100M-1xC"]
    history = store.client.get_metric_history(run_id, "train/loss")
    assert {m.step: m.value for m in history} == curve
    assert registered_ladder(store, "trained").content_hash() == obs.content_hash()


def test_register_ladder_from_lm_eval_results_finds_the_runs_training_curves(store, tmp_path):
    """`register ladder` on `taskladder eval` output: a run trained by taskladder
    (`<run>/hf/step<k>`) gets its train_losses.jsonl as `train/loss`; a model laid out
    otherwise gets no curve, and its observations are registered all the same."""
    curve = {10: 6.5, 20: 5.25, 40: 4.75}
    ours = tmp_path / "runs" / "ours-1xC"
    (ours / "hf" / "step40").mkdir(parents=True)
    (ours / "train_losses.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in curve.items()))
    theirs = tmp_path / "theirs" / "step40"
    theirs.mkdir(parents=True)
    (theirs.parent / "train_losses.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    evals = tmp_path / "evals"
    for run, model in (("ours-1xC", ours / "hf" / "step40"), ("theirs-1xC", theirs)):
        meta = {"run": run, "size": run[:-4], "N": 1e6, "D": 2e7, "step": 40, "flops": 1.2e14}
        (evals / run).mkdir(parents=True)
        (evals / run / "results_2026-01-01.json").write_text(json.dumps({
            "results": {"ladder_piqa_rc": {"acc,none": 0.5, "bpb,none": 1.1}},
            "config": {"model_args": {"pretrained": str(model)}}, "taskladder": meta}))
    assert main(["register", "ladder", "--ladder", str(evals), "--ladder-name", "evals",
                 "--tracking-uri", store.uri]) == 0
    exp = store.client.get_experiment_by_name(experiment_name("evals"))
    runs = {r.info.run_name: r.info.run_id for r in store.client.search_runs([exp.experiment_id])}
    assert set(runs) == {"ours-1xC", "theirs-1xC"}
    history = store.client.get_metric_history(runs["ours-1xC"], "train/loss")
    assert {m.step: m.value for m in history} == curve
    assert store.client.get_metric_history(runs["theirs-1xC"], "train/loss") == []
