"""Data-parallel training over 2 gloo ranks (torchrun, olmo-core DDP on CPU).

Same global batch and seed as one rank, so the loss curve must be the same up to the order of
floating-point sums (measured: train and validation losses within 2e-6 nats). A checkpoint
written by 2 ranks resumes on 1 rank and on 2; export, result.json and ladder_meta.json are
written by rank 0 alone, after a barrier.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from training_support import DIST_VARS, tiny_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4  # nats; measured differences are ~1e-6 (summation order only)
STEPS, CHECKPOINTS = 12, 3
RUN = "t-1xC"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("multirank")


def spec_file(root: Path, name: str) -> Path:
    return tiny_spec(root, name, steps=STEPS, checkpoints=CHECKPOINTS)


def train(root: Path, spec: Path, ranks: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env["TASKLADDER_CACHE"] = str(root / "cache")
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={ranks}"] if ranks > 1 else [sys.executable])
    out = subprocess.run([*launch, "-m", "taskladder.cli", "train", str(spec), "--no-progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def curves(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    train_losses = {}
    for line in (run_dir / "train_losses.jsonl").read_text().splitlines():
        row = json.loads(line)
        train_losses[row["step"]] = row["loss"]
    val = {int(k): v for k, v in json.loads((run_dir / "val_losses.json").read_text()).items()}
    return train_losses, val


def assert_close(a: dict[int, float], b: dict[int, float]) -> float:
    assert sorted(a) == sorted(b)
    worst = max(abs(a[k] - b[k]) for k in a)
    assert worst < TOLERANCE, (a, b)
    return worst


def test_two_ranks_match_one_and_resume_on_one_and_two(root):
    one = spec_file(root, "one")
    two = spec_file(root, "two")
    train(root, one, ranks=1)
    stdout = train(root, two, ranks=2)
    assert stdout.count(f"{RUN}: {STEPS} steps") == 1  # rank 0 reports
    run1, run2 = root / "one" / "runs" / RUN, root / "two" / "runs" / RUN
    train1, val1 = curves(run1)
    train2, val2 = curves(run2)
    assert sorted(train2) == list(range(1, STEPS + 1))
    assert train2[STEPS] < train2[1] - 0.1  # it learned
    assert_close(train1, train2)
    assert_close(val1, val2)

    # written once, by rank 0, after the barrier: one complete export per checkpoint
    result = json.loads((run2 / "result.json").read_text())
    steps = [c["meta"]["step"] for c in result["checkpoints"]]
    assert steps == [4, 8, 12]
    assert sorted(p.name for p in (run2 / "hf").iterdir()) == sorted(f"step{s}" for s in steps)
    for c in result["checkpoints"]:
        meta = json.loads((Path(c["hf_dir"]) / "ladder_meta.json").read_text())
        assert meta == c["meta"] and meta["lm_losses"]["ce_val"] == val2[meta["step"]]
    assert not list(run2.rglob("*.tmp")) and not list((run2 / "hf").glob(".*"))
    assert len({json.loads(line)["pid"] for line in
                (run2 / "batches.jsonl").read_text().splitlines()}) == 1  # rank 0 logs

    # a 2-rank checkpoint (step 8) resumes on 1 rank and on 2, to the same losses
    for ranks in (1, 2):
        name = f"resume{ranks}"
        resumed = spec_file(root, name)
        shutil.copytree(root / "two", root / name)
        rdir = root / name / "runs" / RUN
        for p in ("result.json", "hf", "step12", "train_losses.jsonl", "batches.jsonl"):
            target = rdir / p
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        val = json.loads((rdir / "val_losses.json").read_text())
        del val["12"]
        (rdir / "val_losses.json").write_text(json.dumps(val))
        train(root, resumed, ranks=ranks)
        train_r, val_r = curves(rdir)
        assert sorted(train_r) == [9, 10, 11, 12]  # from the step after the checkpoint
        assert_close(train_r, {k: train2[k] for k in train_r})
        assert_close(val_r, val2)
        assert json.loads((rdir / "result.json").read_text())["checkpoints"][-1]["meta"][
            "step"] == STEPS
