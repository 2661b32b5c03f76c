"""A ladder's checkpoints spread over local workers (`--devices`) and Slurm jobs (`--launcher
slurm`): the same results files as one process, and bad shard counts refused before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from taskladder.cli import main

TASKS = "arc_easy,hellaswag"
META = {"run": "tiny-1xC", "size": "tiny", "N": 123456, "D": 2469120, "flops": 1.83e12,
        "lm_losses": {"ce_val": 6.5}}


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir, tmp_path_factory) -> list[Path]:
    """Four checkpoints of one run: two distinct random models, each at two steps."""
    from tiny_model import make_tiny_olmo2

    root = tmp_path_factory.mktemp("ckpts")
    other = make_tiny_olmo2(root / "seed1", seed=1)
    out = []
    for step, src in zip((10, 20, 30, 40), (tiny_model_dir, other, tiny_model_dir, other),
                         strict=True):
        dest = root / f"step{step}"
        shutil.copytree(src, dest)
        (dest / "ladder_meta.json").write_text(json.dumps({**META, "step": step}))
        out.append(dest)
    return out


def _scores(root: Path) -> dict:
    """run/step -> (results, configs) of every results file under `root`."""
    out = {}
    for path in sorted(root.rglob("results_*.json")):
        data = json.loads(path.read_text())
        key = f"{data['taskladder']['run']}/{data['taskladder']['step']}"
        assert key not in out, f"{key} scored twice"
        out[key] = (data["results"], data["configs"])
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.e2e
def test_two_cpu_workers_give_one_process_results(checkpoints, tmp_path, capfd):
    from taskladder.harness_ext.runner import evaluate_many

    evaluate_many(checkpoints, TASKS, 3, tmp_path / "one", echo=lambda line: None)
    assert main(["eval", "--model-dir", *map(str, checkpoints), "--tasks", TASKS, "--limit",
                 "3", "--output", str(tmp_path / "two"), "--devices", "2"]) == 0
    out = capfd.readouterr().out
    assert "worker 0:" in out and "worker 1:" in out, out
    assert "4 checkpoints scored by 2 workers" in out
    one, two = _scores(tmp_path / "one"), _scores(tmp_path / "two")
    assert sorted(two) == [f"tiny-1xC/{s}" for s in (10, 20, 30, 40)]
    assert two == one
    # everything is scored: a second call starts no worker
    assert main(["eval", "--model-dir", *map(str, checkpoints), "--tasks", TASKS, "--limit",
                 "3", "--output", str(tmp_path / "two"), "--devices", "2"]) == 0
    assert "worker 0:" not in capfd.readouterr().out


def test_bad_worker_and_shard_counts(checkpoints, tmp_path, capsys, monkeypatch):
    base = ["eval", "--model-dir", *map(str, checkpoints[:2]), "--tasks", TASKS,
            "--output", str(tmp_path / "out")]
    assert main([*base, "--devices", "0"]) == 2
    assert _error_line(capsys) == "taskladder: error: devices: must be a positive integer, got 0"
    assert main([*base, "--shards", "2"]) == 2
    assert "shards: 2 applies to --launcher slurm" in _error_line(capsys)
    if shutil.which("sbatch"):
        assert main([*base, "--launcher", "slurm", "--shards", "3"]) == 2
        assert _error_line(capsys) == ("taskladder: error: shards: 3 is more than the 2 "
                                       "checkpoints to score")
        assert main([*base, "--launcher", "slurm", "--shards", "0"]) == 2
        assert "shards: must be a positive integer, got 0" in _error_line(capsys)
    assert main([*base, "--devices", "2", "--launcher", "slurm"]) == 2
    assert "devices: 2 applies to --launcher local" in _error_line(capsys)
    assert main([*base, "--slurm", "partition=gpu"]) == 2
    assert _error_line(capsys) == ("taskladder: error: --slurm: 'partition=gpu' applies to "
                                   "--launcher slurm")
    assert main([*base, "--launcher", "slurm", "--slurm", "cpus_per_task=2,gpus=1"]) == 2
    assert _error_line(capsys).startswith("taskladder: error: --slurm: unknown key 'gpus' "
                                          "(known: partition, gpus_per_node, cpus_per_task, ")
    assert main([*base, "--launcher", "slurm", "--slurm", "max_retries=-1"]) == 2
    assert _error_line(capsys) == ("taskladder: error: --slurm: max_retries: Input should be "
                                   "greater than or equal to 0 (got '-1')")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert main([*base, "--launcher", "slurm"]) == 2
    assert "launcher: 'slurm' needs sbatch on PATH" in _error_line(capsys)
    assert not (tmp_path / "out").exists()  # nothing half written


@pytest.mark.e2e
def test_three_slurm_jobs_one_cancelled_and_resubmitted(slurm, checkpoints, tmp_path):
    """Four checkpoints, three jobs (a job array): the two-checkpoint shard's job is cancelled
    after its first checkpoint, resubmitted, and scores only the one left; the merged results
    equal one process's."""
    import subprocess
    import threading
    import time

    from taskladder.harness_ext.runner import evaluate_many
    from taskladder.harness_ext.shards import SlurmResources, evaluate_sharded

    root, lines, failure = tmp_path / "slurm", [], []
    res = SlurmResources(cpus_per_task=1, poll_seconds=1, max_retries=2, timeout_min=30)

    def launch():
        try:
            evaluate_sharded(checkpoints, TASKS, 3, root, backend="fast", echo=lines.append,
                             launcher="slurm", shards=3, slurm=res)
        except BaseException as exc:  # noqa: BLE001  (reported by the test below)
            failure.append(exc)

    waiter = threading.Thread(target=launch)
    waiter.start()
    first = root / "tiny-1xC" / "step0000010"  # shard 0 holds steps 10 and 40
    deadline = time.monotonic() + 600
    while not any(first.glob("results_*.json")):
        assert time.monotonic() < deadline and waiter.is_alive(), (lines, failure)
        time.sleep(0.2)
    job = json.loads((root / ".shards" / "shard-0.json").read_text())
    subprocess.run(["scancel", job["job_id"]], check=True)
    waiter.join(900)
    assert not waiter.is_alive() and not failure, (lines, failure)

    assert [line for line in lines if "submitted job" in line] == \
        [f"shard {i}/3: submitted job {job['job_id'][:-1]}{i - 1}" for i in (1, 2, 3)]
    resubmitted = [line for line in lines if "resubmitted" in line]
    assert len(resubmitted) == 1 and resubmitted[0].startswith(
        f"shard 1/3: job {job['job_id']} ended (cancelled) with 1/2 checkpoints scored"), lines
    assert any(line.startswith("shard 1/3: done (2 checkpoints)") for line in lines)
    evaluate_many(checkpoints, TASKS, 3, tmp_path / "one", echo=lambda line: None)
    assert _scores(root) == _scores(tmp_path / "one")
    # `fast` travelled to the jobs unpicked, and each job picked it on its node (no GPU here)
    assert json.loads((root / ".shards" / "plan.json").read_text())["settings"]["backend"] == "fast"
    logs = "".join(p.read_text() for p in (root / ".shards" / "slurm").rglob("*_log.out"))
    assert logs.count("backend fast: ladder-hf on ") == 4, logs  # 3 jobs and 1 resubmission
