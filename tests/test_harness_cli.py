"""`taskladder eval` and lm-eval's own CLI on the ladder tasks, end to end on a tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskladder.cli import main

ROOT = Path(__file__).resolve().parent.parent
META = {"run": "tiny-1xC", "size": "tiny", "N": 123456, "D": 2469120, "step": 40,
        "flops": 1.83e12, "lm_losses": {"ce_val": 6.5}}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from taskladder.harness_ext.tiny_model import make_tiny_olmo2

    path = make_tiny_olmo2(tmp_path_factory.mktemp("tiny"), vocab_size=1024, max_len=4096)
    (path / "ladder_meta.json").write_text(json.dumps(META))
    return path


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


@pytest.mark.e2e
def test_eval_writes_results_with_run_metadata(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "evals"
    assert main(["eval", "--model-dir", str(tiny_model_dir), "--tasks", "arc_easy,ladder_mmlu_rc",
                 "--limit", "2", "--output", str(out)]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path.parent == out and path.name.startswith("results_")
    data = json.loads(path.read_text())
    assert data["taskladder"] == META
    for task in ("ladder_arc_easy_rc", "ladder_mmlu_rc"):
        res = data["results"][task]
        assert 0 < res["bpb,none"] < 50 and 0 <= res["acc_norm,none"] <= 1
    # the law engine's reader takes it as it is
    from taskladder.laws.readers import read_ladder

    obs = read_ladder(out, "lm-eval").where(task="arc_easy", metric="bpb")
    assert list(obs.value) == pytest.approx([data["results"]["ladder_arc_easy_rc"]["bpb,none"]])
    assert list(obs.run) == ["tiny-1xC"] and list(obs.step) == [40]


@pytest.mark.e2e
def test_lm_eval_cli_with_wildcard(tiny_model_dir, tmp_path):
    out = tmp_path / "lm_eval_out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [sys.executable, "-m", "taskladder.harness_ext", "--model", "ladder-hf",
           "--model_args", f"pretrained={tiny_model_dir}", "--device", "cpu", "--include_path", "tasks",
           "--tasks", "ladder_arc_*", "--limit", "2", "--output_path", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = out.rglob("results_*.json")
    data = json.loads(results.read_text())
    assert set(data["results"]) == {f"ladder_arc_{k}_{f}" for k in ("easy", "challenge") for f in ("rc", "mc")}
    assert all(r["bpb,none"] > 0 for r in data["results"].values())
    shutil.rmtree(out)
