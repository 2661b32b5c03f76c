"""What every Slurm launcher shares (training's runs, evaluation's shards): the check before any
submission, job states from `squeue`, and progress lines printed once per change.

States come from `squeue -t all`, which answers on every Slurm with or without accounting
(`sacct` needs it): a job that is no longer pending or running has ended, and the caller's own
files say whether it succeeded.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskladder.common.errors import InputError, MissingExtraError

LAUNCHERS = ("local", "slurm")  # where runs and shards go: here, or Slurm jobs
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING",
          "SUSPENDED", "STAGE_OUT", "SIGNALING", "REQUEUE_HOLD", "REQUEUE_FED"}


def check_slurm(field: str = "launcher") -> None:
    """InputError unless `sbatch` is on PATH and submitit is installed (nothing submitted)."""
    if shutil.which("sbatch") is None:
        raise InputError(f"{field}: 'slurm' needs sbatch on PATH (not found; is this a Slurm "
                         "login node?)")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise MissingExtraError("slurm", f"{field} 'slurm'", "submitit") from None


def job_state(job_id: str) -> str:
    """The job's Slurm state (`squeue -t all`); "ENDED" when Slurm no longer lists it."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                         capture_output=True, text=True)
    states = out.stdout.split()
    return states[0] if out.returncode == 0 and states else "ENDED"


def executor(folder: Path, job_name: str, nodes: int, timeout_min: int,
             partition: str | None = None, gpus_per_node: int = 0,
             cpus_per_task: int | None = None, mem_gb: float | None = None,
             additional: dict[str, Any] | None = None):
    """A submitit SlurmExecutor logging under `folder/<job id>`, one task per node, asking for
    what is set (unset resources are left to the cluster's defaults)."""
    import submitit

    out = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=0)
    params = dict(job_name=job_name, nodes=nodes, ntasks_per_node=1, time=timeout_min,
                  **(additional or {}))
    if partition:
        params["partition"] = partition
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if cpus_per_task:
        params["cpus_per_task"] = cpus_per_task
    if mem_gb:
        params["mem"] = f"{int(mem_gb * 1024)}MB"
    out.update_parameters(**params)
    return out


class Progress:
    """One progress line per key, printed only when it changes."""

    def __init__(self, echo: Callable[[str], object]):
        self.echo, self.shown = echo, {}

    def show(self, key: str, line: str) -> None:
        if self.shown.get(key) != line:
            self.shown[key] = line
            self.echo(f"{key}: {line}")
