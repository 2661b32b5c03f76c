"""The Slurm launcher (submitit) on a real single-node Slurm, and its bad-input checks.

The e2e test needs slurmctld + slurmd on this host: tests/slurm/start.sh starts them where they
are installed (root needed) and installs them with apt only when TASKLADDER_INSTALL_SLURM=1
(CI); otherwise it skips with the reason, unless TASKLADDER_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from training_support import DIST_VARS, tiny_spec

from taskladder.cli import main
from taskladder.training.spec import load_ladder_spec

ROOT = Path(__file__).resolve().parent.parent


def write_spec(root: Path, name: str, steps: int, **extra) -> Path:
    """Two tiny runs (0.5xC and 1xC, `steps` steps) as one-CPU Slurm jobs."""
    slurm = {"poll_seconds": 1, "cpus_per_task": 1, "max_retries": 2, **extra.pop("slurm", {})}
    return tiny_spec(root, name, steps, checkpoints=4, multipliers=(0.5, 1.0), slurm=slurm,
                     **extra)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.e2e
def test_slurm_jobs_train_the_ladder_and_a_cancelled_job_resumes(slurm, tmp_path, monkeypatch):
    from taskladder.training.launch import read_job, wait

    monkeypatch.setenv("TASKLADDER_CACHE", str(tmp_path / "cache"))
    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    spec_path = write_spec(tmp_path, "slurm", steps=200)
    spec = load_ladder_spec(str(spec_path))
    long_run = spec.plan()[-1]
    run_dir = spec.out_dir() / "runs" / long_run.run

    out = subprocess.run([sys.executable, "-m", "taskladder.cli", "train", str(spec_path),
                          "--launcher", "slurm"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2 jobs submitted" in out.stdout  # returns at once: nothing trained yet
    assert not (run_dir / "result.json").exists()
    job = read_job(run_dir)

    deadline = time.monotonic() + 240
    first = run_dir / f"step{long_run.checkpoint_steps[0]}" / ".metadata.json"
    while not first.is_file():  # mid-run, after its first checkpoint
        assert time.monotonic() < deadline, "no checkpoint from the Slurm job"
        time.sleep(0.1)
    subprocess.run(["scancel", job.job_id], check=True)
    time.sleep(0.5)
    assert not (run_dir / "result.json").exists(), "the job finished before it was cancelled"

    lines: list[str] = []
    results = wait(spec, echo=lines.append)
    assert [r.run for r in results] == [p.run for p in spec.plan()]
    assert any(f"job {job.job_id} ended (cancelled) without a result; resubmitted" in line
               for line in lines), lines
    assert read_job(run_dir).attempt == 2
    assert any(line.startswith(f"{long_run.run}: running") for line in lines)

    batches = _rows(run_dir / "batches.jsonl")
    pids = list(dict.fromkeys(r["pid"] for r in batches))
    assert len(pids) == 2  # the cancelled job's process, then the resubmitted one
    killed = [r["step"] for r in batches if r["pid"] == pids[0]]
    resumed = [r["step"] for r in batches if r["pid"] == pids[1]]
    assert killed == list(range(1, len(killed) + 1)) and len(killed) < long_run.steps
    resumed_from = resumed[0] - 1  # the cancelled job's last complete checkpoint
    assert resumed_from in long_run.checkpoint_steps and resumed_from <= len(killed)
    assert resumed == list(range(resumed_from + 1, long_run.steps + 1))  # none lost or repeated
    by_step = {r["step"]: r["batch"] for r in batches if r["pid"] == pids[0]}
    assert all(by_step[r["step"]] == r["batch"] for r in batches
               if r["pid"] == pids[1] and r["step"] in by_step)  # same data order
    ckpts = results[-1].checkpoints
    assert [c.step for c in ckpts] == long_run.checkpoint_steps
    assert all(Path(c.hf_dir, "ladder_meta.json").is_file() for c in ckpts)
    assert wait(spec, echo=lines.append) == results  # finished: returns at once


def _fake_sbatch(tmp_path: Path) -> Path:
    """An `sbatch` on PATH that records being called (it must not be)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\ntouch {tmp_path / 'sbatch-called'}\nexit 1\n")
    sbatch.chmod(0o755)
    return bindir


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskladder: error: ") and "\n" not in err
    return err


def test_slurm_without_sbatch_is_bad_input(tmp_path, monkeypatch, capsys):
    spec = write_spec(tmp_path, "nosbatch", steps=4)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["train", str(spec), "--launcher", "slurm"]) == 2
    assert "launcher: 'slurm' needs sbatch on PATH" in _one_line_error(capsys)
    assert not (tmp_path / "nosbatch").exists()


def test_more_ranks_than_the_batch_divides_into(tmp_path, monkeypatch, capsys):
    spec = write_spec(tmp_path, "ranks", steps=4, slurm={"ranks_per_node": 3})
    monkeypatch.setenv("PATH", f"{_fake_sbatch(tmp_path)}:{os.environ['PATH']}")
    assert main(["train", str(spec), "--launcher", "slurm"]) == 2
    err = _one_line_error(capsys)
    assert "sizes.t.batch_sequences=4 does not divide over 3 ranks" in err
    assert not (tmp_path / "sbatch-called").exists()


def test_the_slurm_flag_is_checked_and_applied_before_any_submission(tmp_path, monkeypatch,
                                                                    capsys):
    spec = str(write_spec(tmp_path, "flag", steps=4))
    monkeypatch.setenv("PATH", f"{_fake_sbatch(tmp_path)}:{os.environ['PATH']}")
    slurm = ["train", spec, "--launcher", "slurm", "--slurm"]
    for argv, line in [
        (["train", spec, "--slurm", "nodes=2"], "--slurm: 'nodes=2' applies to --launcher slurm"),
        ([*slurm, "gpus=1"], "--slurm: unknown key 'gpus' (known: partition, nodes, "
                             "gpus_per_node, ranks_per_node, cpus_per_task, mem_gb, timeout_min, "
                             "max_retries, poll_seconds)"),
        ([*slurm, "nodes=0"], "--slurm: nodes: Input should be greater than 0 (got '0')"),
        # the spec's batch of 4 does not divide over the 3 ranks the flag asks for
        ([*slurm, "partition=cpu,ranks_per_node=3"], "batch_sequences=4 does not divide over "
                                                     "3 ranks"),
    ]:
        assert main(argv) == 2
        assert line in _one_line_error(capsys)
    assert not (tmp_path / "sbatch-called").exists() and not (tmp_path / "flag").exists()


def test_unknown_corpus_format(tmp_path, monkeypatch, capsys):
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    spec = write_spec(tmp_path, "fmt", steps=4,
                      corpus={"kind": "auto", "paths": [str(tmp_path / "data.parquet")]})
    monkeypatch.setenv("PATH", f"{_fake_sbatch(tmp_path)}:{os.environ['PATH']}")
    for launcher in ("slurm", "local"):
        assert main(["train", str(spec), "--launcher", launcher]) == 2
        err = _one_line_error(capsys)
        assert "corpus.paths:" in err and "data.parquet' has an unknown format" in err
    assert not (tmp_path / "sbatch-called").exists() and not (tmp_path / "fmt").exists()
