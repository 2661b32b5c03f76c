"""`taskladder run`: the stages from a spec to a checked prediction, each skipping finished work.

Every stage is a function of a `RunContext` that returns a one-line summary. Work is kept on
disk under the spec's output folder (checkpoints, lm-eval results, the observation table,
fits, predictions) and in the tracking store, so a second run finds it and skips it, and a
killed run continues where it stopped. `state.json` records, per stage, the hash of the input
it last finished on; a stage whose input is unchanged is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskladder.config import PipelineSpec


@dataclass
class RunContext:
    """What the stages share: the spec, where things go, and what earlier stages produced."""

    spec: PipelineSpec
    out: Path
    echo: Callable[[str], None] = print
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def tracking_uri(self) -> str:
        return self.spec.tracking()

    # finished-work bookkeeping ----------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.out / "state.json"

    def _state(self) -> dict:
        path = self._state_path()
        return json.loads(path.read_text()) if path.is_file() else {}

    def finished(self, stage: str, key: str) -> bool:
        """Did `stage` already finish on the input identified by `key`?"""
        return self._state().get(stage, {}).get("key") == key

    def mark(self, stage: str, key: str, **info: Any) -> None:
        state = self._state()
        state[stage] = {"key": key, **info}
        write_json(self._state_path(), state)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], str]
    applies: Callable[[PipelineSpec], bool] = lambda spec: True


@dataclass
class StageReport:
    name: str
    seconds: float
    summary: str


def run_pipeline(spec: PipelineSpec, stages: list[Stage], echo: Callable[[str], None] = print,
                 only: list[str] | None = None) -> tuple[RunContext, list[StageReport]]:
    """Run the stages that apply to `spec` in order; returns the context and per-stage timings."""
    quiet_libraries()
    ctx = RunContext(spec=spec, out=spec.out_dir(), echo=echo)
    ctx.out.mkdir(parents=True, exist_ok=True)
    write_json(ctx.out / "spec.json", spec.model_dump(mode="json", by_alias=True))
    reports = []
    for stage in stages:
        if not stage.applies(spec) or (only and stage.name not in only):
            continue
        echo(f"== {stage.name}")
        t0 = time.perf_counter()
        summary = stage.run(ctx)
        reports.append(StageReport(stage.name, time.perf_counter() - t0, summary))
        echo(f"   {stage.name}: {summary} ({reports[-1].seconds:.1f} s)")
    write_json(ctx.out / "timings.json", [r.__dict__ for r in reports])
    return ctx, reports


def quiet_libraries() -> None:
    """MLflow's and lm-eval's info logs and progress bars would bury the stage lines."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # lm-eval warns once per truncated request; the harness reports the count itself.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp name, then rename): a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able inputs: the identity of a stage's input."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
