"""Where ladder runs execute: in this process (`local`, the default) or as Slurm jobs (`slurm`).

The Slurm launcher uses submitit: one job per unfinished run, `torchrun` inside with the
spec's nodes and ranks per node, training just that run (`taskladder train SPEC --run RUN`).
A run is finished when its `result.json` exists, so a job that failed or was cancelled is
simply submitted again and resumes from the run's last checkpoint. Job ids are kept in
`<run>/job.json`, so `submit` started by one command can be waited on by another.

Job states come from `squeue` (taskladder.common.slurm): a job that is no longer pending or
running has ended, and its run's `result.json` says whether it succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from taskladder.common.echo import Echo, echo
from taskladder.common.errors import InputError
from taskladder.common.io import write_json
from taskladder.common.slurm import (
    ACTIVE,
    LAUNCHERS,
    Progress,
    check_slurm,
    executor,
    job_state,
)
from taskladder.training.spec import LadderSpec, RunPlan

JOB_FILE = "job.json"
SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class Job:
    """One submission of one run."""

    run: str
    job_id: str
    attempt: int


def check_launcher(spec: LadderSpec, launcher: str) -> None:
    """Everything a launcher needs, before any job is submitted (one line on failure)."""
    from taskladder.training.ladder import check_ready
    from taskladder.training.run import check_ranks

    if launcher not in LAUNCHERS:
        raise InputError(f"launcher: {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    check_ready(spec)
    if launcher == "slurm":
        check_slurm()
        check_ranks(spec, spec.slurm.ranks)


def run_ladder(spec: LadderSpec, launcher: str = "local", echo: Echo = echo,
               progress: bool = True) -> list:
    """Train the whole ladder with `launcher` and return its RunResults (in plan order).

    `local` trains here, one run after another. `slurm` submits the unfinished runs, waits
    with a progress line per run, resubmits failed or cancelled jobs (up to
    `slurm.max_retries` each) and returns when every run has its result.
    """
    from taskladder.training.ladder import train_ladder

    check_launcher(spec, launcher)
    if launcher == "local":
        return train_ladder(spec, progress=progress, echo=echo)
    submit(spec, echo=echo, checked=True)
    return wait(spec, echo=echo)


def submit(spec: LadderSpec, echo: Echo = echo, checked: bool = False,
           runs: list[str] | None = None) -> list[Job]:
    """Submit a Slurm job for every run (of `runs`, default all) that is neither finished nor
    queued; return the new jobs."""
    from taskladder.training.ladder import RESULT_FILE, runs_dir, select_plans

    if not checked:
        check_launcher(spec, "slurm")
    spec_file = write_spec(spec)
    jobs = []
    for plan in select_plans(spec.plan(), runs):
        run_dir = runs_dir(spec) / plan.run
        if (run_dir / RESULT_FILE).is_file():
            continue
        old = read_job(run_dir)
        if old is not None and job_state(old.job_id) in ACTIVE:
            continue
        jobs.append(_submit_run(spec, spec_file, plan, run_dir,
                                attempt=old.attempt + 1 if old else 1))
        echo(f"{plan.run}: submitted job {jobs[-1].job_id}")
    return jobs


def wait(spec: LadderSpec, echo: Echo = echo) -> list:
    """Wait for every run's result; resubmit a run whose job ended without one."""
    from taskladder.training.ladder import RESULT_FILE, read_result, runs_dir

    plans = spec.plan()
    spec_file = write_spec(spec)
    progress = Progress(echo)
    while True:
        pending = 0
        for plan in plans:
            run_dir = runs_dir(spec) / plan.run
            if (run_dir / RESULT_FILE).is_file():
                progress.show(plan.run, "done")
                continue
            pending += 1
            job = read_job(run_dir)
            state = job_state(job.job_id) if job else "NONE"
            if state in ACTIVE:
                step = last_step(run_dir)
                progress.show(plan.run, f"{state.lower()} (job {job.job_id}, attempt "
                              f"{job.attempt}), step {step}/{plan.steps}")
                continue
            if (run_dir / RESULT_FILE).is_file():  # finished between the two looks
                continue
            attempt = job.attempt + 1 if job else 1
            if attempt > spec.slurm.max_retries + 1:
                raise RuntimeError(f"run {plan.run}: job {job.job_id} ended without a result "
                                   f"{job.attempt} times; see {_log_dir(spec)}")
            why = f"job {job.job_id} ended ({state.lower()}) without a result" if job else \
                "no job"
            new = _submit_run(spec, spec_file, plan, run_dir, attempt)
            echo(f"{plan.run}: {why}; resubmitted as job {new.job_id} (attempt {attempt}), "
                 f"resuming from step {last_checkpoint(run_dir)}")
        if not pending:
            return [read_result(runs_dir(spec) / p.run / RESULT_FILE) for p in plans]
        time.sleep(spec.slurm.poll_seconds)


def write_spec(spec: LadderSpec) -> Path:
    """The resolved spec the jobs train from (absolute paths, same output folder)."""
    data = spec.model_dump(mode="json")
    data["output_dir"] = str(spec.out_dir())
    path = spec.out_dir() / SPEC_FILE
    if not path.is_file() or json.loads(path.read_text()) != data:
        write_json(path, data, indent=1)
    return path


def read_job(run_dir: Path) -> Job | None:
    path = run_dir / JOB_FILE
    return Job(**json.loads(path.read_text())) if path.is_file() else None


def last_step(run_dir: Path) -> int:
    """The last step the run logged (its batch log's last line), 0 before the first."""
    path = run_dir / "batches.jsonl"
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 4096))
        lines = fh.read().splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def last_checkpoint(run_dir: Path) -> int:
    steps = [int(p.name[4:]) for p in run_dir.glob("step*")
             if p.name[4:].isdigit() and (p / ".metadata.json").is_file()]
    return max(steps, default=0)


def _log_dir(spec: LadderSpec) -> Path:
    return spec.out_dir() / "slurm"


def _submit_run(spec: LadderSpec, spec_file: Path, plan: RunPlan, run_dir: Path,
                attempt: int) -> Job:
    s = spec.slurm
    job = executor(_log_dir(spec), f"taskladder-{spec.name}-{plan.run}", s.nodes, s.timeout_min,
                   s.partition, s.gpus_per_node, s.cpus_per_task, s.mem_gb,
                   s.additional).submit(train_job, str(spec_file), plan.run, s.nodes,
                          s.ranks_per_node or s.gpus_per_node or 1)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = Job(run=plan.run, job_id=str(job.job_id), attempt=attempt)
    write_json(run_dir / JOB_FILE, record.__dict__, indent=1)
    return record


def train_job(spec_file: str, run: str, nodes: int, ranks_per_node: int) -> None:
    """What one Slurm job runs (on each of its nodes): torchrun training one run."""
    cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun_args(nodes, ranks_per_node),
           "-m", "taskladder.cli", "train", spec_file, "--only", run, "--no-progress"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # submitit's job process ignores SIGTERM (it waits for Slurm's SIGUSR2 to requeue), and
    # torchrun's workers run in sessions of their own, where Slurm's SIGKILL does not reach
    # them once torchrun is gone: on `scancel`, kill the whole tree (the run resumes from its
    # last checkpoint when resubmitted), then end the job as failed.
    signal.signal(signal.SIGTERM, lambda signum, frame: _kill_tree(proc.pid))
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it, children first."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def torchrun_args(nodes: int, ranks_per_node: int) -> list[str]:
    """torchrun's arguments: standalone on one node, c10d rendezvous on the first node else."""
    if nodes == 1:
        return ["--standalone", f"--nproc-per-node={ranks_per_node}"]
    import submitit

    env = submitit.JobEnvironment()
    return [f"--nnodes={nodes}", f"--nproc-per-node={ranks_per_node}",
            f"--node-rank={env.node}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={env.hostnames[0]}:29500", f"--rdzv-id={env.job_id}"]
