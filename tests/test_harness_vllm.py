"""vLLM's CPU build on the ladder tasks, in its own venv (.ci/vllm-venv.sh), on a model that
`taskladder train` exported: `taskladder eval --backend vllm` / `ladder-vllm` give the hf
backend's metrics, and lm-eval's own CLI runs `--model vllm` on every `ladder_*` task.

Accuracies must be identical. bpb, ce and task_ce may differ by float32 rounding only: vLLM's
CPU attention and torch's SDPA sum in different orders; the largest per-request
log-likelihood difference measured (bench_eval.py, up to 200 questions per task) is 5.2e-5
nats on HellaSwag, 2.1e-5 on ARC-Easy. A mean bpb moves by at most that x log2(e) / bytes of
the answer (>= 3 here), ce by that / characters, so TOL = 1e-4 holds with margin, while a real
scoring error (an off-by-one position, a token scored twice) moves them by 0.1 or more.
Skips (with the reason) where the venv is absent, fails there when TASKLADDER_REQUIRE_VLLM=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("TASKLADDER_VLLM_VENV", ROOT / ".venv-vllm"))
TASKS = ["ladder_arc_easy_rc", "ladder_hellaswag_rc"]
LIMIT = 24
TOL = 1e-4
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def venv_bin() -> Path:
    if not (VENV / ".taskladder-stamp").is_file():
        reason = f"no vLLM venv at {VENV} (build it with .ci/vllm-venv.sh)"
        if os.environ.get("TASKLADDER_REQUIRE_VLLM") == "1":
            pytest.fail(reason + " but TASKLADDER_REQUIRE_VLLM=1")
        pytest.skip(reason)
    return VENV / "bin"


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """A d64 L2 model (head_dim 32) trained briefly and exported by taskladder train. Its
    512-token window holds the ARC-Easy requests whole and truncates HellaSwag's (~700
    tokens), so both scoring paths of each backend are compared."""
    from taskladder.harness_ext.olmes import olmes_docs
    from taskladder.training.ladder import train_ladder
    from taskladder.training.spec import load_ladder_spec

    root = tmp_path_factory.mktemp("vllm-train")
    text = "\n\n".join(d["context"].rsplit("\n\n", 1)[-1] + d["continuations"][d["gold"]]
                       for d in olmes_docs("hellaswag", "rc"))
    (root / "corpus.txt").write_text(text)
    spec = load_ladder_spec({
        "name": "vllm", "sizes": [{"name": "d64", "d_model": 64, "n_layers": 2, "n_heads": 2,
                                   "hidden_size_multiple_of": 32, "batch_sequences": 4}],
        "multipliers": [1.0], "sequence_length": 512, "checkpoints_per_run": 1,
        "tokenizer": {"kind": "bpe", "vocab_size": 1024, "model_max_length": 4096},
        "corpus": {"kind": "text", "paths": [str(root / "corpus.txt")], "val_fraction": 0.05,
                   "val_max_tokens": 2048},
        "tokens_per_param": 0.05, "warmup_tokens_per_param": 0.01,
        "output_dir": str(root / "out")})
    [result] = train_ladder(spec, progress=False)
    return Path(result.checkpoints[-1].hf_dir)


@pytest.fixture(scope="module")
def hf_results(trained_model, tmp_path_factory) -> dict:
    from taskladder.harness_ext.runner import evaluate

    out = tmp_path_factory.mktemp("hf") / "hf.json"
    return json.loads(evaluate(trained_model, TASKS, LIMIT, out, backend="hf").read_text())


def _run(cmd: list, **env) -> subprocess.CompletedProcess:
    from training_support import DIST_VARS  # an earlier in-process training leaves them

    env = dict({k: v for k, v in os.environ.items() if k not in DIST_VARS}, HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", **env)
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _assert_same_metrics(got: dict, want: dict) -> None:
    for task in TASKS:
        for key, value in want["results"][task].items():
            if "stderr" in key or not key.endswith(",none"):
                continue
            if key.startswith("acc"):
                assert got["results"][task][key] == value, (task, key)
            else:
                assert abs(got["results"][task][key] - value) < TOL, (task, key)


@pytest.mark.parametrize("backend", ["vllm", "ladder-vllm"])
def test_taskladder_eval_vllm_equals_hf(backend, venv_bin, trained_model, hf_results, tmp_path):
    out = tmp_path / f"{backend}.json"
    _run([venv_bin / "taskladder", "eval", "--model-dir", trained_model, "--backend", backend,
          "--tasks", ",".join(TASKS), "--limit", LIMIT, "--output", out])
    got = json.loads(out.read_text())
    assert got["config"]["model"] == backend and got["taskladder"] == hf_results["taskladder"]
    _assert_same_metrics(got, hf_results)


def test_lm_eval_cli_vllm_on_every_ladder_task(venv_bin, trained_model, tmp_path):
    args = (f"pretrained={trained_model},dtype=float32,enforce_eager=True,"
            "gpu_memory_utilization=0.3,distributed_executor_backend=uni")
    # in-process engine: with vLLM's engine process the CLI does not exit after the results
    _run([venv_bin / "lm_eval", "--model", "vllm", "--model_args", args,
          "--include_path", "tasks", "--tasks", "ladder_*", "--limit", 1,
          "--output_path", tmp_path / "out"], VLLM_ENABLE_V1_MULTIPROCESSING="0")
    (results,) = (tmp_path / "out").rglob("results_*.json")
    data = json.loads(results.read_text())["results"]
    assert len([t for t in data if t.startswith("ladder_") and "bpb,none" in data[t]]) == 28
    assert all(r["bpb,none"] > 0 for r in data.values() if "bpb,none" in r)


def test_head_size_the_cpu_build_cannot_run(venv_bin, tiny_model_dir, tmp_path):
    odd = tmp_path / "head48"
    shutil.copytree(tiny_model_dir, odd)
    cfg = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**cfg, "head_dim": 48}))
    proc = subprocess.run([str(venv_bin / "taskladder"), "eval", "--model-dir", str(odd),
                           "--backend", "ladder-vllm"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "backend ladder-vllm: " in line and "head_dim 48" in line
    assert "--backend ladder-hf" in line


LONG_SCRIPT = """
import json, sys
from pathlib import Path
import lm_eval.api.registry as registry
import taskladder.harness_ext.backend  # registers ladder-vllm
from taskladder.harness_ext.runner import model_args
model_dir, cases = sys.argv[1], json.loads(sys.argv[2])
args = model_args("ladder-vllm", Path(model_dir), "cpu", "float32", 8)
lm = registry.get_model("ladder-vllm")(**args)
got = lm._loglikelihood_tokens([(("", ""), c, t) for c, t in cases])
print("ANSWERS " + json.dumps(got))
"""


def test_ladder_vllm_scores_over_long_requests_like_ladder_hf(venv_bin, tmp_path):
    """Requests longer than the window, a continuation longer than the window among them
    (lm-eval's vllm path sums only part of it): ladder-vllm gives ladder-hf's
    answers, which equal plain forward passes (test_harness_backend)."""
    import random

    from tiny_model import make_tiny_olmo2

    from taskladder.harness_ext.backend import LadderHFLM

    model_dir = make_tiny_olmo2(tmp_path / "m", max_len=32)
    rng = random.Random(1)

    def toks(n: int) -> list[int]:
        return [rng.randrange(3, 500) for _ in range(n)]

    cases = [(toks(10), toks(80)), (toks(3), toks(33)), (toks(40), toks(32)), (toks(50), toks(20)),
             (toks(5), toks(5)), (toks(20), toks(12))]
    want = LadderHFLM(pretrained=str(model_dir), device="cpu")._loglikelihood_tokens(
        [(("", ""), c, t) for c, t in cases])
    proc = _run([venv_bin / "python", "-c", LONG_SCRIPT, model_dir, json.dumps(cases)])
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("ANSWERS ")]
    got = json.loads(line.removeprefix("ANSWERS "))
    for (ctx, cont), (ll, greedy), (want_ll, want_greedy) in zip(cases, got, want, strict=True):
        assert abs(ll - want_ll) < TOL * max(1, len(cont)), (len(ctx), len(cont), ll, want_ll)
        assert greedy == want_greedy, (len(ctx), len(cont))
