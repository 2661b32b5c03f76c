"""Readers: OLMo-ladder CSV, lm-eval results, our table; detection; bad input; properties."""

import csv
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskladder.common.errors import FieldError, InputError
from taskladder.common.facts import MMLU_WEIGHTS, OLMO_SIZES, PAPER_TASKS
from taskladder.laws.observations import Observations
from taskladder.laws.readers import (
    detect_format,
    final_values,
    read_ladder,
    select_runs,
    sizes_of,
)
from taskladder.laws.tasks import chance_level, chance_levels, ladder_tasks, select_tasks

GROUPS = list(MMLU_WEIGHTS)


def olmo_header(bpb_suffix="_bpb"):
    h = ["_step", "eval/c4_en-validation/CrossEntropyLoss"]
    h += [f"eval/downstream_bpb/mmlu_{g}_test_rc_5shot{bpb_suffix}" for g in GROUPS]
    h += [f"eval/downstream/mmlu_{g}_test_rc_5shot_len_norm" for g in GROUPS]
    h += [f"eval/downstream_bpb/arc_easy_{s}_rc_5shot{bpb_suffix}" for s in ("val", "test")]
    h += [
        "eval/downstream/arc_easy_val_rc_5shot_len_norm",
        "eval/downstream/arc_easy_test_rc_5shot_len_norm",
        "eval/downstream/boolq_val_rc_5shot_acc",
        "eval/downstream_soft_log/arc_easy_test_rc_5shot_soft_log",
        "throughput/total_tokens",
        "batch_size_in_tokens",
    ]
    return h


def olmo_row(step, i=0):
    return (
        [step, 3.0 - 0.01 * i]
        + [1.0, 2.0, 3.0, 4.0]
        + [0.3, 0.4, 0.5, 0.6]
        + [0.9, 0.8]
        + [0.6, 0.7, 0.65, -1.25]
        + [step * 1000, 1000]
    )


def write_olmo(path, rows=3, suffix="_bpb"):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(olmo_header(suffix))
        for i in range(rows):
            w.writerow(olmo_row(100 * (i + 1), i))


@pytest.mark.parametrize("suffix", ["_bpb", "_bpb_bpb"])
def test_olmo_csv_metrics_mmlu_weights_and_splits(tmp_path, suffix):
    write_olmo(tmp_path / "190M-1xC.csv", suffix=suffix)
    obs = read_ladder(tmp_path)
    assert detect_format(tmp_path) == "olmo-csv"
    row = obs.where(step=300)
    get = {(t, m): v for t, m, v in zip(row.task, row.metric, row.value, strict=True)}
    assert get[("mmlu", "bpb")] == pytest.approx(0.215 * 1 + 0.335 * 2 + 0.219 * 3 + 0.231 * 4)
    assert get[("mmlu", "acc_norm")] == pytest.approx(
        0.215 * 0.3 + 0.335 * 0.4 + 0.219 * 0.5 + 0.231 * 0.6
    )
    assert get[("arc_easy", "bpb")] == 0.8  # the test split where a task has one
    assert get[("arc_easy", "acc_norm")] == 0.7
    assert get[("arc_easy", "task_ce")] == 1.25  # soft_log negated
    assert get[("boolq", "acc")] == 0.65
    assert get[("lm", "ce_c4_en")] == pytest.approx(2.98)
    n, fpt = OLMO_SIZES["190M"]
    assert set(row.N) == {n} and set(row.D) == {300_000.0} and set(row.flops) == {fpt * 300_000.0}


@pytest.mark.parametrize("stem, size", [("3B-1xC", "3B"), ("peteish13_eval_final", "13B")])
def test_olmo_csv_3b_and_13b_files(tmp_path, stem, size):
    """OLMo-ladder's 3B and peteish13 files: N from the facts, FLOPs per token 6N (not logged)."""
    write_olmo(tmp_path / f"{stem}.csv")
    obs = read_ladder(tmp_path)
    n = {"3B": 3_169_537_280, "13B": 13_202_396_160}[size]
    assert set(obs.size) == {size} and set(obs.N) == {n} and set(obs.run) == {stem}
    row = obs.where(step=200)
    assert set(row.flops) == {6.0 * n * 200_000.0}


def test_unknown_sizes_from_the_flag_or_sizes_json(tmp_path):
    write_olmo(tmp_path / "150M-1xC.csv")
    with pytest.raises(FieldError, match="^sizes: unknown model size '150M'.*150M=N"):
        read_ladder(tmp_path)
    assert set(read_ladder(tmp_path, sizes={"150M": 1.5e8}).N) == {1.5e8}
    assert set(read_ladder(tmp_path, sizes={"150M": "1.5e8"}).N) == {1.5e8}
    (tmp_path / "sizes.json").write_text(json.dumps({"150M": "151M"}))
    assert set(read_ladder(tmp_path).N) == {151e6}
    for bad, match in (({"150M": "abc"}, "not a number"), ({"150M": -3}, "positive")):
        with pytest.raises(FieldError, match=f"^sizes: 150M=.*{match}"):
            sizes_of(bad)


def test_lm_eval_any_task_with_its_chance_and_question_count(tmp_path):
    meta = {"run": "t-1xC", "N": 1e6, "D": 2e7, "step": 40}
    data = {
        "results": {"my_task": {"acc,none": 0.4, "acc_norm,none": 0.45}},
        "n-samples": {"my_task": {"original": 500, "effective": 200}},
        "configs": {"my_task": {"doc_to_choice": ["a", "b", "c", "d", "e"]}},
        "taskladder": meta,
    }
    (tmp_path / "results_1.json").write_text(json.dumps(data))
    obs = read_ladder(tmp_path)
    got = {(t, m): v for t, m, v in zip(obs.task, obs.metric, obs.value, strict=True)}
    assert got[("my_task", "acc_norm")] == 0.45 and got[("my_task", "n_questions")] == 200
    assert got[("my_task", "chance")] == pytest.approx(0.2)
    assert chance_level("my_task", obs) == pytest.approx(0.2)
    assert chance_level("my_task", obs, {"my_task": 0.3}) == 0.3
    with pytest.raises(FieldError, match="^chance: .*'other' is unknown; give it as other=P"):
        chance_level("other", obs)
    with pytest.raises(FieldError, match="^chance: x=1.5 must be in"):
        chance_levels({"x": 1.5})
    assert chance_levels({"x": "0.25"}) == {"x": 0.25}


def test_task_lists_paper_all_and_names():
    """`paper` = the paper's eight; `all` = every task with an accuracy in the ladder (not the
    facts' ten: a ladder without HellaSwag has no HellaSwag to fit); errors name `tasks`."""
    obs = Observations.from_records(
        [
            dict(run="r", size="s", N=1e6, D=2e7, step=1, flops=1.2e14, task=t, metric=m, value=v)
            for t, m, v in (
                ("piqa", "acc_norm", 0.6),
                ("my_task", "acc", 0.4),
                ("arc_easy", "bpb", 1.2),  # a loss but no accuracy
                ("lm", "ce_c4_en", 3.0),
            )
        ]
    )
    assert ladder_tasks(obs) == ["piqa", "my_task"]
    assert select_tasks(["all"], obs) == ["piqa", "my_task"]
    assert select_tasks(["paper"]) == select_tasks(None) == list(PAPER_TASKS)
    # nothing asked: the paper's tasks with an accuracy in the ladder, else every such task
    assert select_tasks(None, obs) == ["piqa"]
    assert select_tasks(None, obs.where(task=["my_task", "arc_easy", "lm"])) == ["my_task"]
    # no accuracy at all: the ladder's own tasks, which the fit names as lacking one
    assert select_tasks(None, obs.where(task=["arc_easy", "lm"])) == ["arc_easy"]
    assert select_tasks(None, obs.where(task="lm")) == list(PAPER_TASKS)
    assert select_tasks(["piqa", " my_task", "piqa"]) == ["piqa", "my_task"]
    for bad, match in ((["lm"], "'lm' is not a task key"), ([" "], "no task given")):
        with pytest.raises(FieldError, match=f"^tasks: {match}"):
            select_tasks(bad)


def test_olmo_csv_real_7b_target(olmo_ladder_dir):
    obs = read_ladder(olmo_ladder_dir / "peteish7_eval_anneal.csv")
    assert final_values(obs, "mmlu", "acc_norm")["peteish7_eval_anneal"] == pytest.approx(
        0.4901, abs=1e-4
    )
    assert final_values(obs, "arc_challenge", "acc_mc")["peteish7_eval_anneal"] > 0.7
    assert set(obs.D) == {3_945_065_873_408.0}


def _lm_eval_results(path, with_meta=True, mmlu_groups=False, model_dir=None):
    results = {
        "ladder_arc_easy_rc": {
            "acc,none": 0.5,
            "acc_norm,none": 0.55,
            "bpb,none": 0.9,
            "acc_stderr,none": 0.01,
            "newfangled,none": 7,
        },
        "ladder_arc_easy_mc": {"acc,none": 0.3},
        "ladder_core": {"acc,none": 0.1},
    }
    if mmlu_groups:
        for i, g in enumerate(GROUPS):
            results[f"ladder_mmlu_{g}_rc"] = {"bpb,none": float(i + 1)}
    data = {
        "results": results,
        "config": {"model_args": f"pretrained={model_dir},dtype=float32" if model_dir else ""},
    }
    meta = {
        "run": "tiny-1xC",
        "size": "tiny",
        "N": 1e6,
        "D": 2e7,
        "step": 40,
        "flops": 1.2e14,
        "lm_losses": {"ce_val": 4.5},
    }
    if with_meta:
        data["taskladder"] = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return meta


def test_lm_eval_results_tree(tmp_path):
    _lm_eval_results(tmp_path / "a" / "results_2026-01-01.json", mmlu_groups=True)
    obs = read_ladder(tmp_path)
    got = {(t, m): v for t, m, v in zip(obs.task, obs.metric, obs.value, strict=True)}
    assert got[("arc_easy", "acc_norm")] == 0.55 and got[("arc_easy", "acc_mc")] == 0.3
    assert got[("arc_easy", "acc_stderr")] == 0.01  # the measurement's noise, for the verdict
    assert got[("mmlu", "bpb")] == pytest.approx(
        sum(w * (i + 1) for i, w in enumerate(MMLU_WEIGHTS.values()))
    )
    assert got[("lm", "ce_val")] == 4.5
    assert ("arc_easy", "newfangled") not in got and set(obs.run) == {"tiny-1xC"}


def test_lm_eval_meta_from_model_dir_or_one_line_error(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    _lm_eval_results(tmp_path / "r" / "results_x.json", with_meta=False, model_dir=model)
    with pytest.raises(InputError, match="ladder_meta.json does not exist"):
        read_ladder(tmp_path / "r")
    (model / "ladder_meta.json").write_text(
        json.dumps({"run": "m-1xC", "N": 1e6, "D": 2e7, "step": 3})
    )
    obs = read_ladder(tmp_path / "r")
    assert set(obs.run) == {"m-1xC"} and set(obs.size) == {"m"}
    (model / "ladder_meta.json").write_text(json.dumps({"run": "m-1xC", "N": 1e6, "step": 3}))
    with pytest.raises(InputError, match="missing D"):
        read_ladder(tmp_path / "r")


def test_table_csv_and_json(tmp_path):
    rec = dict(
        run="r", size="s", N=1e6, D=2e7, step=1, flops=1.2e14, task="piqa", metric="bpb", value=1.1
    )
    (tmp_path / "t.json").write_text(json.dumps({"observations": [rec]}))
    assert read_ladder(tmp_path / "t.json").records() == [rec]
    Observations.from_records([rec]).to_csv(tmp_path / "t.csv")
    assert detect_format(tmp_path / "t.csv") == "table"
    assert read_ladder(tmp_path / "t.csv").records() == [rec]


@pytest.mark.parametrize(
    "content, match",
    [
        ("run,size,N,D,step,flops,task,metric\nr,s,1,1,1,1,piqa,bpb\n", "missing column 'value'"),
        ("run,size,N,D,step,flops,task,metric,value,x\n", "unexpected column 'x'"),
        ("run,size,N,D,step,flops,task,metric,value\nr,s,1,1,1,1,piqa,bpb,nan\n", "line 2: value"),
        ("run,size,N,D,step,flops,task,metric,value\nr,s,-1,1,1,1,piqa,bpb,1\n", "line 2: N"),
        (
            "run,size,N,D,step,flops,task,metric,value\nr,s,1,1,1,1,piqa\n",
            "line 2: expected 9 fields",
        ),
    ],
)
def test_bad_table_csv_names_what_and_where(tmp_path, content, match):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(InputError, match=match) as exc:
        read_ladder(tmp_path / "t.csv", "table")
    assert "t.csv" in str(exc.value) and "\n" not in str(exc.value)


def test_bad_olmo_and_json_inputs(tmp_path):
    write_olmo(tmp_path / "190M-1xC.csv")
    text = (tmp_path / "190M-1xC.csv").read_text()
    (tmp_path / "190M-1xC.csv").write_text(text[: len(text) - 20])  # truncated last row
    with pytest.raises(InputError, match="line 4: expected"):
        read_ladder(tmp_path)
    (tmp_path / "190M-1xC.csv").write_text(text.replace("0.65", "abc", 1))
    with pytest.raises(InputError, match="boolq_val_rc_5shot_acc.*not a number"):
        read_ladder(tmp_path)
    (tmp_path / "190M-1xC.csv").unlink()
    write_olmo(tmp_path / "3Q-1xC.csv")
    with pytest.raises(InputError, match="^sizes: .*3Q=N"):
        read_ladder(tmp_path)
    (tmp_path / "results_1.json").write_text('{"results": {"ladder_piqa_rc": ')
    with pytest.raises(InputError, match="not valid JSON.*truncated"):
        read_ladder(tmp_path / "results_1.json", "lm-eval")
    with pytest.raises(InputError, match="does not exist"):
        read_ladder(tmp_path / "nope")
    with pytest.raises(FieldError, match="^runs: no run matches") as exc:
        select_runs(Observations.from_records([]), "*-1xC")
    assert exc.value.field == "runs"


def test_selected_runs_are_the_only_files_parsed(tmp_path):
    """`runs` picks an OLMo-ladder folder's files before parsing: a broken unselected file is
    never read, and the table equals reading everything and then selecting."""
    write_olmo(tmp_path / "190M-1xC.csv")
    write_olmo(tmp_path / "1B-2xC.csv")
    whole = read_ladder(tmp_path)
    (tmp_path / "1B-5xC.csv").write_text("not,a\nladder")
    picked = read_ladder(tmp_path, runs=["*-1xC", "1B-2xC"])
    assert picked.content_hash() == whole.content_hash()
    assert read_ladder(tmp_path, runs=["190M-*"]).unique("run") == ["190M-1xC"]
    with pytest.raises(FieldError, match="^runs: no run matches '7B-\\*'"):
        read_ladder(tmp_path, runs=["7B-*"])


records = st.fixed_dictionaries(
    {
        "run": st.sampled_from(["a-1xC", "b-2xC", "c,d"]),
        "size": st.sampled_from(["a", "b"]),
        "N": st.floats(1, 1e12, allow_nan=False),
        "D": st.floats(0, 1e14, allow_nan=False),
        "step": st.integers(0, 10**7),
        "flops": st.floats(0, 1e25, allow_nan=False),
        "task": st.sampled_from(["piqa", "mmlu", "lm"]),
        "metric": st.sampled_from(["bpb", "acc_norm", "ce_val"]),
        "value": st.floats(0, 1, allow_nan=False),  # a loss >= 0, an accuracy in [0, 1]
    }
)


def _key(rec: dict) -> tuple:  # a table holds one value per (run, step, task, metric)
    return rec["run"], rec["step"], rec["task"], rec["metric"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(records, min_size=1, max_size=12, unique_by=_key))
def test_table_round_trip_property(tmp_path, recs):
    Observations.from_records(recs).to_csv(tmp_path / "p.csv")
    back = read_ladder(tmp_path / "p.csv")
    assert back.records() == Observations.from_records(recs).records()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(records, min_size=1, max_size=6), st.data())
def test_damaged_files_fail_with_one_line_or_read_fewer_rows(tmp_path, recs, data):
    """Truncating or corrupting a table never gives a traceback: an InputError or a valid table."""
    obs = Observations.from_records(recs)
    for name in ("q.csv", "q.json"):
        path = tmp_path / name
        if name.endswith(".csv"):
            obs.to_csv(path)
        else:
            path.write_text(json.dumps(obs.records()))
        raw = path.read_bytes()
        cut = data.draw(st.integers(0, len(raw)))
        junk = data.draw(st.sampled_from([b"", b"nan", b",,", b"\x00", b'"', b"-1"]))
        path.write_bytes(raw[:cut] + junk)
        try:
            got = read_ladder(path, "table")
        except InputError as exc:
            assert "\n" not in str(exc) and name in str(exc)
            continue
        assert len(got) <= len(obs) + 1
        assert all(np.isfinite(got.N)) and np.all(got.N > 0)
        assert all(math.isfinite(v) for v in got.value)
