"""`taskladder eval`, `evaluate_many` and lm-eval's own CLI on the ladder tasks, end to end on
the tiny model; bad input (backend, device, model shape, missing extra) as one line, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from taskladder.cli import main

ROOT = Path(__file__).resolve().parent.parent
META = {"run": "tiny-1xC", "size": "tiny", "N": 123456, "D": 2469120, "step": 40,
        "flops": 1.83e12, "lm_losses": {"ce_val": 6.5}}


def _with_meta(src: Path, dest: Path, **meta) -> Path:
    shutil.copytree(src, dest)
    (dest / "ladder_meta.json").write_text(json.dumps({**META, **meta}))
    return dest


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a ladder_meta.json, as training exports it."""
    return _with_meta(tiny_model_dir, tmp_path_factory.mktemp("with-meta") / "model")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_model_dir_without_tokenizer(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["eval", "--model-dir", str(tmp_path), "--tasks", "ladder_core"]) == 2
    assert _error_line(capsys).startswith(f"taskladder: error: model-dir {tmp_path}: no tokenizer")


def test_unknown_task_and_bad_limit(tiny_model_dir, capsys):
    assert main(["eval", "--model-dir", str(tiny_model_dir), "--tasks", "ladder_squad_rc"]) == 2
    assert "'ladder_squad_rc' is not a ladder task" in _error_line(capsys)
    assert main(["eval", "--model-dir", str(tiny_model_dir), "--limit", "0"]) == 2
    assert "limit must be a positive integer" in _error_line(capsys)


def test_backend_that_cannot_run_here(tiny_model_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: a cuda request is valid here")
    assert main(["eval", "--model-dir", str(tiny_model_dir), "--device", "cuda"]) == 2
    line = _error_line(capsys)
    assert "backend ladder-hf: device cuda requested" in line and "--device cpu" in line
    if find_spec("vllm") is None:  # (inside the vLLM venv see test_harness_vllm.py)
        assert main(["eval", "--model-dir", str(tiny_model_dir), "--backend", "vllm"]) == 2
        line = _error_line(capsys)
        assert line.startswith("taskladder: error: backend vllm: vllm is not installed")
        assert ".ci/vllm-venv.sh" in line


def test_missing_eval_extra_names_it(tiny_model_dir, capsys, monkeypatch):
    import importlib.util

    # a core install: lm_eval cannot be found
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))
    assert main(["eval", "--model-dir", str(tiny_model_dir)]) == 2
    line = _error_line(capsys)
    assert "taskladder eval needs the 'eval' extra (lm_eval is not installed)" in line
    assert "pip install 'taskladder[eval]'" in line


@pytest.mark.e2e
def test_eval_writes_results_with_run_metadata(model_dir, tmp_path, capsys):
    out = tmp_path / "evals"
    assert main(["eval", "--model-dir", str(model_dir), "--tasks", "arc_easy,ladder_mmlu_rc",
                 "--limit", "2", "--output", str(out)]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path.parent == out and path.name.startswith("results_")
    data = json.loads(path.read_text())
    assert data["taskladder"] == META
    assert data["config"]["model"] == "ladder-hf" and data["config"]["limit"] == 2
    for task in ("ladder_arc_easy_rc", "ladder_mmlu_rc"):
        res = data["results"][task]
        assert 0 < res["bpb,none"] < 50 and 0 <= res["acc_norm,none"] <= 1
    # the law engine's reader takes it as it is
    from taskladder.laws.readers import read_ladder

    obs = read_ladder(out, "lm-eval").where(task="arc_easy", metric="bpb")
    assert list(obs.value) == pytest.approx([data["results"]["ladder_arc_easy_rc"]["bpb,none"]])
    assert list(obs.run) == ["tiny-1xC"] and list(obs.step) == [40]


@pytest.mark.e2e
def test_evaluate_many_equals_evaluate_and_skips_done(tiny_model_dir, tmp_path):
    from tiny_model import make_tiny_olmo2

    from taskladder.harness_ext.runner import evaluate, evaluate_many

    other = make_tiny_olmo2(tmp_path / "seed1", seed=1)
    dirs = [_with_meta(tiny_model_dir, tmp_path / "a", step=10),
            _with_meta(other, tmp_path / "b", step=20)]
    tasks = ["arc_easy", "hellaswag"]
    lines: list[str] = []
    paths = evaluate_many(dirs, tasks, 3, tmp_path / "many", echo=lines.append)
    assert [p.parent for p in paths] == [tmp_path / "many" / "tiny-1xC" / f"step{s:07d}"
                                         for s in (10, 20)]
    assert "2 models scored with ladder-hf: 48 requests" in lines[-1], lines
    for model, path in zip(dirs, paths, strict=True):
        many = json.loads(path.read_text())
        one = json.loads(evaluate(model, tasks, 3, tmp_path / "one.json").read_text())
        assert many["taskladder"] == one["taskladder"]
        assert many["results"] == one["results"] and many["configs"] == one["configs"]
        assert set(many) == set(one)
    # the two models differ, so a mix-up between them would show
    first, second = (json.loads(p.read_text())["results"] for p in paths)
    assert first["ladder_arc_easy_rc"]["bpb,none"] != second["ladder_arc_easy_rc"]["bpb,none"]
    # a second call finds both results files and scores nothing
    lines.clear()
    assert evaluate_many(dirs, tasks, 3, tmp_path / "many", echo=lines.append) == paths
    assert lines == []


@pytest.mark.e2e
def test_lm_eval_cli_with_wildcard(tiny_model_dir, tmp_path):
    out = tmp_path / "lm_eval_out"
    from training_support import DIST_VARS  # an earlier in-process training leaves them

    env = dict({k: v for k, v in os.environ.items() if k not in DIST_VARS}, HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    cmd = [sys.executable, "-m", "taskladder.harness_ext", "--model", "ladder-hf",
           "--model_args", f"pretrained={tiny_model_dir}", "--device", "cpu",
           "--include_path", "tasks", "--tasks", "ladder_arc_*", "--limit", "2",
           "--output_path", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = out.rglob("results_*.json")
    data = json.loads(results.read_text())
    want = {f"ladder_arc_{k}_{f}" for k in ("easy", "challenge") for f in ("rc", "mc")}
    assert set(data["results"]) == want
    assert all(r["bpb,none"] > 0 for r in data["results"].values())
