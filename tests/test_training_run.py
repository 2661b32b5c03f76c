"""Real olmo-core training of a tiny model: loss falls, checkpoints export to Hugging Face with
identical logits, lm-eval loads them, and a SIGKILLed run resumes without lost or repeated steps.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from training_support import DIST_VARS, corpus_file, tiny_spec

from taskladder.training.corpus import read_documents
from taskladder.training.spec import CorpusSpec, load_ladder_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
META_KEYS = {"run", "size", "N", "D", "step", "flops", "lm_losses"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A small wiki corpus, a shared token cache, and a spec writer for tiny runs."""
    root = tmp_path_factory.mktemp("train")
    corpus_file(root)
    old = os.environ.get("TASKLADDER_CACHE")
    os.environ["TASKLADDER_CACHE"] = str(root / "cache")
    yield root
    if old is None:
        os.environ.pop("TASKLADDER_CACHE", None)
    else:
        os.environ["TASKLADDER_CACHE"] = old


def test_micro_run_trains_exports_and_is_idempotent(workdir):
    from taskladder.training.ladder import train_ladder

    spec = load_ladder_spec(str(tiny_spec(workdir, "short", steps=24, checkpoints=4)))
    [result] = train_ladder(spec, progress=False)
    assert [c.step for c in result.checkpoints] == [6, 12, 18, 24]
    losses = [c.val_loss for c in result.checkpoints]
    assert losses[-1] < losses[0] and losses[-1] < math.log(512) - 0.5  # learned from uniform
    for c in result.checkpoints:
        meta = json.loads((Path(c.hf_dir) / "ladder_meta.json").read_text())
        assert set(meta) == META_KEYS and meta["step"] == c.step
        assert meta["D"] == c.step * 256 == c.tokens and meta["N"] == result.N
        assert meta["flops"] == pytest.approx(6 * meta["N"] * meta["D"])
        assert meta["lm_losses"]["ce_val"] == c.val_loss
        assert (Path(result.run_dir) / f"step{c.step}" / "model_and_optim").is_dir()
    done = Path(result.run_dir) / "result.json"
    stamp = done.stat().st_mtime_ns
    assert train_ladder(spec, progress=False) == [result]  # finished runs are read back
    assert done.stat().st_mtime_ns == stamp


def test_hf_export_matches_olmo_core_logits_and_loads_in_lm_eval(workdir):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from olmo_core.distributed.checkpoint import load_model_and_optim_state
    from transformers import AutoModelForCausalLM

    from taskladder.training.callbacks import validation_loss
    from taskladder.training.ladder import train_ladder
    from taskladder.training.model import model_config

    spec = load_ladder_spec(str(tiny_spec(workdir, "short", steps=24, checkpoints=4)))
    [result] = train_ladder(spec, progress=False)
    ckpt = result.checkpoints[-1]
    model = model_config(spec.sizes[0], spec.vocab_size).build(init_device="cpu")
    load_model_and_optim_state(f"{result.run_dir}/step{ckpt.step}/model_and_optim", model)
    model.eval()
    hf = AutoModelForCausalLM.from_pretrained(ckpt.hf_dir, dtype=torch.float32).eval()
    assert type(hf).__name__ == "Olmo2ForCausalLM"
    ids = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff < 1e-4
    tokens = np.random.default_rng(0).integers(0, 512, 256)
    assert validation_loss(hf, tokens, 64) == pytest.approx(validation_loss(model, tokens, 64),
                                                            abs=1e-5)

    lm = HFLM(pretrained=ckpt.hf_dir, device="cpu", batch_size=2)
    req = Instance(request_type="loglikelihood", doc={}, idx=0,
                   arguments=("The history of the city", " began in the year 1900."))
    [(ll, _greedy)] = lm.loglikelihood([req])
    assert math.isfinite(ll) and ll < 0


def _batch_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "batches.jsonl").read_text().splitlines()]


def test_killed_run_resumes_without_lost_or_repeated_steps(workdir):
    spec_path = tiny_spec(workdir, "killed", steps=24, checkpoints=4)
    run_dir = workdir / "killed" / "runs" / "t-1xC"
    cmd = [sys.executable, "-m", "taskladder.cli", "train", str(spec_path), "--no-progress"]
    # a fresh process group: drop what an in-process run left in os.environ (MASTER_PORT, ...)
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    log = workdir / "killed.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not (run_dir / "step6").is_dir():
        assert proc.poll() is None, f"run ended before step 6: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = [int(p.name[4:]) for p in run_dir.glob("step*")  # olmo-core writes metadata last
                if p.name[4:].isdigit() and (p / ".metadata.json").is_file()]
    assert 24 not in complete and not (run_dir / "result.json").exists()
    last = max(complete, default=0)
    first = _batch_log(run_dir)

    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    log = _batch_log(run_dir)
    killed_pid = first[0]["pid"]
    resumed = [r for r in log if r["pid"] != killed_pid]
    killed = [r for r in log if r["pid"] == killed_pid]
    assert [r["step"] for r in killed] == list(range(1, len(killed) + 1))
    assert [r["step"] for r in resumed] == list(range(last + 1, 25))  # nothing lost or redone
    by_step = {r["step"]: r["batch"] for r in killed}
    overlap = [r for r in resumed if r["step"] in by_step]
    assert all(by_step[r["step"]] == r["batch"] for r in overlap)  # same data order
    assert len({r["batch"] for r in resumed}) == len(resumed)
    result = json.loads((run_dir / "result.json").read_text())
    assert [c["meta"]["step"] for c in result["checkpoints"]] == [6, 12, 18, 24]
    assert len(list((workdir / "cache" / "corpus").glob("tokens-*"))) == 1  # cache reused
    assert all(Path(c["hf_dir"], "ladder_meta.json").is_file() for c in result["checkpoints"])


def test_paper_small_smallest_run_trains_its_few_hundred_steps(workdir):
    from taskladder.training.ladder import train_ladder

    spec = load_ladder_spec("paper-small-ladder", {
        "output_dir": str(workdir / "paper-small"),
        "corpus": {"kind": "text", "paths": [str(workdir / "corpus.txt")]}})
    first = spec.plan()[0]
    [result] = train_ladder(spec, progress=False, runs=[first.run])
    assert result.steps == first.steps >= 200
    losses = [c.val_loss for c in result.checkpoints]
    assert losses == sorted(losses, reverse=True) and losses[-1] < math.log(2048) - 1


def test_olmo_core_token_files_train_in_place(workdir):
    """A numpy corpus (OLMo tokenizer ids, as OLMo data ships) is memory-mapped by olmo-core."""
    from taskladder.training.corpus import EOS, load_tokenizer, olmo_tokenizer_path
    from taskladder.training.ladder import train_ladder

    tok = load_tokenizer(olmo_tokenizer_path())
    eos = tok.convert_tokens_to_ids(EOS)
    docs = read_documents(CorpusSpec(kind="text", paths=[str(workdir / "corpus.txt")]))
    paths = []
    for i, part in enumerate((docs[:200], docs[200:])):
        ids = [t for d in part for t in (*tok(d)["input_ids"], eos)]
        paths.append(workdir / f"olmo-{i}.npy")
        np.asarray(ids, dtype=np.uint32).tofile(paths[-1])
    path = tiny_spec(workdir, "numpy", steps=6, checkpoints=1)
    data = yaml.safe_load(path.read_text())
    data["tokenizer"] = {"kind": "olmo"}
    data["corpus"] = {"kind": "auto", "paths": [str(p) for p in paths], "val_max_tokens": 256}
    n = load_ladder_spec(data).plan()[0].N  # the 50k vocabulary's output head counts in N
    data["tokens_per_param"] = 5.5 * 4 * 64 / n
    spec = load_ladder_spec(data)
    assert spec.plan()[0].steps == 6
    [result] = train_ladder(spec, progress=False)
    work = list((Path(result.run_dir) / "work").rglob("*.npy"))
    assert not any(p.stat().st_size >= paths[0].stat().st_size for p in work)  # not copied
    meta = result.checkpoints[-1].meta
    assert meta.step == result.steps and math.isfinite(meta.lm_losses["ce_val"])
    assert load_tokenizer(result.checkpoints[-1].hf_dir).eos_token == EOS
