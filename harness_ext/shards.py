"""A ladder's checkpoints scored by several workers: one process per local device (a GPU, or a
group of CPU cores) or one Slurm job per shard (a submitit job array).

Checkpoints are dealt round-robin into shards (run sizes interleave, so shards take about the
same time) and each worker runs `evaluate_many` on its shard: one results file per checkpoint
under `results_dir(checkpoint, root)`, written atomically. Those files are the merge and the
skip mechanism: a checkpoint with a results file is never scored again, a worker killed mid-way
(a cancelled job) loses only the checkpoint it was on, and a finished set reads exactly like one
process's output. The plan (settings and each shard's checkpoints) is `<root>/.shards/plan.json`;
Slurm job records and logs sit beside it, where no reader of results looks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskladder.common.errors import InputError
from taskladder.common.io import read_json, write_json
from taskladder.common.slurm import LAUNCHERS
from taskladder.harness_ext.preflight import pick_fast
from taskladder.harness_ext.runner import (
    RESULTS_GLOB,
    _Session,
    check_model_dir,
    evaluate_many,
    results_dir,
)

PLAN_DIR = ".shards"
# torch.distributed's rendezvous, as torchrun or olmo-core's single-process setup leave it in
# the process that trained: a worker inheriting it has accelerate (lm-eval's hf model) join
# the trainer's process group, whose port the trainer still holds.
RENDEZVOUS_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NUM_NODES",
                  "FS_LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "ROLE_RANK",
                  "TORCHELASTIC_RUN_ID")


@dataclass(frozen=True)
class SlurmResources:
    """What each shard's job asks Slurm for, and how the launcher waits on it (the names of
    training's `slurm` section; each job is one node)."""

    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 24 * 60
    max_retries: int = 3
    poll_seconds: float = 10.0
    additional: dict[str, Any] = field(default_factory=dict)


def deal(items: list, k: int) -> list[list]:
    """`items` dealt round-robin into `k` shards."""
    return [items[i::k] for i in range(k)]


def check_count(name: str, value, most: int | None = None, what: str = "") -> int:
    """A positive integer at most `most`, else one InputError line naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise InputError(f"{name}: {value} is more than the {most} {what}")
    return value


def _gpus() -> list[str]:
    """The GPUs this process sees, as CUDA_VISIBLE_DEVICES entries for its workers."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return names[:count] if len(names) >= count else [str(i) for i in range(count)]


def evaluate_sharded(model_dirs: list[Path], tasks: list[str] | str, limit: int | None,
                     output_root: Path, backend: str = "ladder-hf",
                     echo: Callable[[str], object] = print, batch_size: int = 32,
                     device: str | None = None, dtype: str = "float32", devices: int = 1,
                     launcher: str = "local", shards: int | None = None,
                     slurm: SlurmResources | None = None) -> list[Path]:
    """`evaluate_many` spread over `devices` local workers or `shards` Slurm jobs (default one
    per checkpoint); every input is checked before a worker starts or a job is submitted.
    Returns each checkpoint's newest results file, in the order of `model_dirs`."""
    if launcher not in LAUNCHERS:
        raise InputError(f"launcher: {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    dirs = [check_model_dir(d) for d in model_dirs]
    root = Path(output_root)
    dests = [results_dir(d, root) for d in dirs]
    check_count("devices", devices)
    # `fast` picks its engine where the work runs: here for local workers, on each Slurm
    # job's node (`run_shard`) for jobs
    if backend == "fast" and launcher == "local":
        backend = pick_fast()
    if launcher == "local":
        if shards is not None:
            raise InputError(f"shards: {shards!r} applies to --launcher slurm (local workers "
                             "are --devices)")
        if devices == 1:
            return evaluate_many(dirs, tasks, limit, root, backend, echo, batch_size, device,
                                 dtype)
    else:
        if devices != 1:
            raise InputError(f"devices: {devices} applies to --launcher local (Slurm jobs are "
                             "--shards, each with its slurm gpus_per_node)")
        from taskladder.common.slurm import check_slurm

        check_slurm()
        shards = check_count("shards", len(dirs) if shards is None else shards, len(dirs),
                             "checkpoints to score")
    session = _Session(tasks, limit, backend, device, dtype, batch_size, dirs)  # checks them
    settings = {"tasks": session.names, "limit": limit,
                "backend": backend if backend == "fast" else session.backend,
                "batch_size": batch_size, "device": device, "dtype": dtype}
    todo = [d for d, dest in zip(dirs, dests, strict=True) if not any(dest.glob(RESULTS_GLOB))]
    if todo:
        t0 = time.perf_counter()
        if launcher == "local":
            workers = local_workers(devices, session.device)
            plan = write_plan(root, settings, deal(todo, min(len(workers), len(todo))))
            run_local(plan, workers, echo)
        else:
            plan = write_plan(root, settings, deal(todo, min(shards, len(todo))))
            run_slurm(plan, slurm or SlurmResources(), echo)
        echo(f"   {len(todo)} checkpoints scored by {len(read_json(plan)['shards'])} "
             f"{'workers' if launcher == 'local' else 'Slurm jobs'} in "
             f"{time.perf_counter() - t0:.1f} s; {len(dirs) - len(todo)} already done")
    return [_newest(dest) for dest in dests]


def _newest(dest: Path) -> Path:
    found = sorted(dest.glob(RESULTS_GLOB))
    if not found:
        raise RuntimeError(f"{dest}: no results file after every worker finished")
    return found[-1]


def local_workers(devices: int, device: str | None = None) -> list[dict[str, str]]:
    """Each local worker's environment: its own GPU (so `ladder-vllm` runs one engine per
    device), or its share of the CPU cores; `device` None is the backends' default (CUDA
    where visible). More workers than visible GPUs is one InputError line."""
    from taskladder.harness_ext.runner import default_device

    check_count("devices", devices)
    if (device or default_device()) == "cuda":
        gpus = _gpus()
        check_count("devices", devices, len(gpus), "GPUs visible here")
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus[:devices]]
    threads = str(max(1, (os.cpu_count() or 1) // devices))
    return [{"OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(devices)]


def write_plan(root: Path, settings: dict, shards: list[list[Path]]) -> Path:
    """The plan every worker reads: settings, output root and each shard's checkpoints."""
    return write_json(root / PLAN_DIR / "plan.json",
                      {"settings": settings, "root": str(root.resolve()),
                       "shards": [[str(Path(d).resolve()) for d in s] for s in shards]})


def shard_left(plan: dict, index: int) -> tuple[int, int]:
    """(checkpoints of shard `index` with results, checkpoints in it)."""
    dirs = [Path(d) for d in plan["shards"][index]]
    done = sum(any(results_dir(d, Path(plan["root"])).glob(RESULTS_GLOB)) for d in dirs)
    return done, len(dirs)


def run_shard(plan_file: str, index: int) -> None:
    """What one worker (a local process or a Slurm job) runs: `evaluate_many` on its shard.

    SIGTERM ends it at once: submitit's job process ignores it (waiting for a requeue signal),
    so a `scancel` would otherwise let the shard run on for Slurm's KillWait. Results files are
    written atomically, so only the checkpoint in flight is lost. A worker is one process: it
    drops any torch.distributed rendezvous it inherited (`taskladder run` trains, then
    launches it)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in RENDEZVOUS_ENV:
        os.environ.pop(name, None)
    plan = read_json(plan_file)
    s, dirs = plan["settings"], [Path(d) for d in plan["shards"][index]]
    backend = pick_fast() if s["backend"] == "fast" else s["backend"]
    print(f"backend {s['backend']}: {backend} on {socket.gethostname()}", flush=True)
    evaluate_many(dirs, s["tasks"], s["limit"], Path(plan["root"]), backend,
                  lambda line: print(line, flush=True), s["batch_size"], s["device"], s["dtype"])


def run_local(plan: Path, workers: list[dict[str, str]], echo: Callable[[str], object]) -> None:
    """One process per shard, each with its environment; their progress lines are echoed."""
    procs = [subprocess.Popen([sys.executable, "-m", "taskladder.harness_ext.shards", str(plan),
                               str(i)], env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                              stdout=subprocess.PIPE, text=True)
             for i, env in enumerate(workers[:len(read_json(plan)["shards"])])]

    def forward(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            echo(f"   worker {i}: {line.strip()}")

    threads = [threading.Thread(target=forward, args=(i, p), daemon=True)
               for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    codes = [p.wait() for p in procs]
    for t in threads:
        t.join()
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        raise RuntimeError(f"evaluation workers {failed} failed (exit codes "
                           f"{[codes[i] for i in failed]}); finished checkpoints are kept, "
                           "rerun to score the rest")


def run_slurm(plan: Path, res: SlurmResources, echo: Callable[[str], object]) -> None:
    """A job array over the plan's shards; waits with a progress line per shard and resubmits
    a shard whose job ended (failed, cancelled, timed out) before its checkpoints were scored,
    up to `res.max_retries` times. Jobs of this plan still queued are waited on, not doubled."""
    from taskladder.common.slurm import ACTIVE, Progress, job_state

    doc = read_json(plan)
    n = len(doc["shards"])
    records = [_record(plan, i) for i in range(n)]
    fresh = [i for i in range(n) if shard_left(doc, i)[0] < len(doc["shards"][i])
             and not (records[i] and records[i]["plan"] == _digest(doc)
                      and job_state(records[i]["job_id"]) in ACTIVE)]
    for i, job_id in zip(fresh, _submit(plan, fresh, res), strict=True):
        records[i] = _keep(plan, doc, i, job_id, 1)
        echo(f"shard {i + 1}/{n}: submitted job {job_id}")
    progress = Progress(echo)
    while True:
        pending = 0
        for i in range(n):
            done, total = shard_left(doc, i)
            key = f"shard {i + 1}/{n}"
            if done == total:
                progress.show(key, f"done ({total} checkpoints)")
                continue
            pending += 1
            job = records[i]
            state = job_state(job["job_id"])
            if state in ACTIVE:
                progress.show(key, f"{state.lower()} (job {job['job_id']}, attempt "
                                   f"{job['attempt']}), {done}/{total} checkpoints scored")
                continue
            if shard_left(doc, i)[0] == total:  # finished between the two looks
                continue
            if job["attempt"] > res.max_retries:
                raise RuntimeError(f"{key}: job {job['job_id']} ended ({state.lower()}) with "
                                   f"{done}/{total} checkpoints scored, {job['attempt']} times; "
                                   f"see {plan.parent}")
            (job_id,) = _submit(plan, [i], res)
            records[i] = _keep(plan, doc, i, job_id, job["attempt"] + 1)
            echo(f"{key}: job {job['job_id']} ended ({state.lower()}) with {done}/{total} "
                 f"checkpoints scored; resubmitted as job {job_id} (attempt "
                 f"{job['attempt'] + 1})")
        if not pending:
            return
        time.sleep(res.poll_seconds)


def _digest(doc: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _record(plan: Path, i: int) -> dict | None:
    path = plan.parent / f"shard-{i}.json"
    return read_json(path) if path.is_file() else None


def _keep(plan: Path, doc: dict, i: int, job_id: str, attempt: int) -> dict:
    record = {"shard": i, "job_id": job_id, "attempt": attempt, "plan": _digest(doc)}
    write_json(plan.parent / f"shard-{i}.json", record, indent=1)
    return record


def _submit(plan: Path, shards: list[int], res: SlurmResources) -> list[str]:
    """One job per shard in `shards` (a job array when there are several); their ids."""
    if not shards:
        return []
    from taskladder.common.slurm import executor

    ex = executor(plan.parent / "slurm", f"taskladder-eval-{plan.parent.parent.name}", 1,
                  res.timeout_min, res.partition, res.gpus_per_node, res.cpus_per_task,
                  res.mem_gb, res.additional)
    jobs = ex.map_array(run_shard, [str(plan)] * len(shards), shards)
    return [str(job.job_id) for job in jobs]


if __name__ == "__main__":  # a local worker: python -m taskladder.harness_ext.shards PLAN INDEX
    run_shard(sys.argv[1], int(sys.argv[2]))
