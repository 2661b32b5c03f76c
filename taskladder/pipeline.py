"""`taskladder run`'s one way to skip finished work: stages with declared inputs and outputs.

A stage declares its inputs (the spec sections it reads, its upstream stages' outputs and the
version of the code it calls), runs to produce a typed output, and says how to verify that
output (files on disk, runs and model versions in the registry). It is skipped only when its
inputs are those it last finished on AND its output still verifies; otherwise it runs, and
the run says why. `state.json` under the output folder is the one record: per stage, the
inputs it finished on and its output. Areas resume inside a stage (a killed training run
continues from its checkpoint, scored checkpoints are not scored again), each in a folder
named by the stage's inputs, so a changed input never reuses stale work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

from taskladder.common.io import read_json, write_json
from taskladder.config import PipelineSpec

STATE_FILE = "state.json"
T = TypeVar("T")


class Output(Protocol):
    """A stage's typed result: JSON round trip and a check that it still exists."""

    def to_dict(self) -> dict: ...

    def missing(self, ctx: RunContext) -> str | None:
        """None when every output verifies, else what is missing (one line)."""


@dataclass
class RunContext:
    """What the stages share: the spec, where things go, and the typed outputs so far."""

    spec: PipelineSpec
    out: Path
    echo: Callable[[str], None] = print
    outputs: dict[str, Output] = field(default_factory=dict)
    _store: Any = None

    @property
    def tracking_uri(self) -> str:
        return self.spec.tracking()

    @property
    def store(self):
        """The tracking store, opened on first use."""
        if self._store is None:
            from taskladder.registry.store import open_store

            self._store = open_store(self.tracking_uri)
        return self._store

    def found(self, kind: type[T]) -> T | None:
        """The output of the stage that makes a `kind` (each output type is one stage's, so
        stage names live only in STAGES), or None when that stage did not run."""
        return next((v for v in self.outputs.values() if isinstance(v, kind)), None)

    def output(self, kind: type[T]) -> T:
        """An upstream stage's output, which must be there."""
        value = self.found(kind)
        if value is None:
            raise RuntimeError(f"no stage has produced a {kind.__name__}")
        return value


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: Callable[[RunContext], dict]  # JSON-able: spec sections, upstream outputs, code
    run: Callable[[RunContext, Path], Output]  # gets its work folder
    load: Callable[[dict], Output]  # the output from its state record
    summary: Callable[[Output], str]
    applies: Callable[[PipelineSpec], bool] = lambda spec: True
    workdir: str | None = None  # work goes to <out>/<workdir>/<key>, emptied by --force

    def folder(self, ctx: RunContext, key: str) -> Path:
        return ctx.out / self.workdir / key[:10] if self.workdir else ctx.out


@dataclass
class StageReport:
    name: str
    ran: bool
    why: str
    seconds: float
    summary: str


def run_pipeline(spec: PipelineSpec, stages: list[Stage], echo: Callable[[str], None] = print,
                 force: tuple[str, ...] = (), only: tuple[str, ...] = ()
                 ) -> tuple[RunContext, list[StageReport]]:
    """Run or skip each stage that applies, in order; returns the context and a report each."""
    quiet_libraries()
    ctx = RunContext(spec=spec, out=spec.out_dir(), echo=echo)
    ctx.out.mkdir(parents=True, exist_ok=True)
    write_json(ctx.out / "spec.json", spec.model_dump(mode="json", by_alias=True))
    state_path = ctx.out / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {}
    reports = []
    for stage in stages:
        if not stage.applies(spec) or (only and stage.name not in only):
            continue
        t0 = time.perf_counter()
        inputs = json.loads(json.dumps(stage.inputs(ctx), default=str))  # as the state holds them
        key = digest(inputs)
        record = state.get(stage.name)
        why, output = _skip_reason(ctx, stage, key, inputs, record, stage.name in force)
        ran = output is None
        echo(f"== {stage.name}: {'runs' if ran else 'skipped'} ({why})")
        if ran:
            folder = stage.folder(ctx, key)
            if stage.name in force and stage.workdir:
                shutil.rmtree(folder, ignore_errors=True)  # areas resume: start them afresh
            output = stage.run(ctx, folder)
            state[stage.name] = {"key": key, "inputs": inputs, "output": output.to_dict(),
                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_json(state_path, state)
        ctx.outputs[stage.name] = output
        report = StageReport(stage.name, ran, why, time.perf_counter() - t0,
                             stage.summary(output))
        reports.append(report)
        echo(f"   {stage.name}: {report.summary} ({report.seconds:.1f} s)")
    write_json(ctx.out / "timings.json", [r.__dict__ for r in reports])
    return ctx, reports


def _skip_reason(ctx: RunContext, stage: Stage, key: str, inputs: dict, record: dict | None,
                 forced: bool) -> tuple[str, Output | None]:
    """(why, the verified output) when the stage can be skipped, else (why it runs, None)."""
    if forced:
        return "forced with --force", None
    if record is None:
        return "no earlier run", None
    if record["key"] != key:
        old = record.get("inputs", {})
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        return f"inputs changed: {', '.join(changed) or 'all'}", None
    output = stage.load(record["output"])
    missing = output.missing(ctx)
    if missing:
        return f"outputs missing: {missing}", None
    return "inputs unchanged, outputs verified", output


def quiet_libraries() -> None:
    """MLflow's and lm-eval's info logs and progress bars would bury the stage lines."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # lm-eval warns once per truncated request; the harness reports the count itself.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able inputs: the identity of a stage's input."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def code_version(*areas: str) -> str:
    """The project version plus a hash of the areas' source files (taskladder.<area>), so new
    code is never skipped as finished work by old code's record."""
    h = hashlib.sha256()
    for area in areas:
        root = resources.files(f"taskladder.{area}")
        for path in sorted(Path(str(root)).rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                h.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{metadata.version('taskladder')}+{h.hexdigest()[:12]}"
