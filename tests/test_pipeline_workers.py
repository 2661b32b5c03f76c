"""The pipeline's evaluate stage spread out, after training in the same process (as
`taskladder run` does): `--devices 2` local workers, and Slurm jobs on a real single-node
Slurm (`--launcher slurm --shards 2 --slurm ...`). A tiny trained ladder's checkpoints; the
merged results equal one local process's; where the stage ran is not part of its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskladder import stages
from taskladder.config import PipelineSpec, load_spec
from taskladder.outputs import Trained
from taskladder.pipeline import run_pipeline

WIDTH = {"name": "d32", "d_model": 32, "n_layers": 1, "n_heads": 1,
         "hidden_size_multiple_of": 32, "batch_sequences": 8}
STAGES = ("train", "evaluate")


def _scores(paths) -> dict:
    """run/step -> (results, configs) of each results file."""
    out = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        out[f"{data['taskladder']['run']}/{data['taskladder']['step']}"] = (data["results"],
                                                                            data["configs"])
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[PipelineSpec, dict]:
    """One width, two lengths, two kept checkpoints each (four, trained in seconds here), and
    their scores from one local process."""
    from taskladder.harness_ext.runner import evaluate_many

    root = tmp_path_factory.mktemp("workers")
    spec_file = root / "tiny.json"
    spec_file.write_text(json.dumps({
        "name": "tiny-workers",
        "ladder": {"train": "cpu-micro-ladder",
                   "overrides": {"sizes": [WIDTH], "multipliers": [0.01, 0.02],
                                 "checkpoints_per_run": 2, "end_checkpoints": 0}},
        # a named backend: `fast` on Slurm is picked by each node, another key
        # (test_harness_devices), so reuse across launchers holds for the named ones
        "evaluate": {"tasks": ["piqa"], "limit": 4, "backend": "ladder-hf"},
        "target": {"name": "t", "N": 1e9, "D": 2e10},
        "output_dir": str(root / "out")}))
    spec = load_spec(str(spec_file))
    ctx, _ = run_pipeline(spec, stages.STAGES, echo=lambda line: None, only=("train",))
    models = [Path(m.hf_dir) for m in ctx.output(Trained).models]
    one = evaluate_many(models, ["piqa"], 4, root / "one", echo=lambda line: None)
    assert len(models) == 4 and len(_scores(one)) == 4
    return spec, _scores(one)


def _evaluate(spec: PipelineSpec, **where) -> tuple[list[str], list[str]]:
    """The evaluate stage from scratch on `where` (--devices, --launcher, ...): its lines and
    results files."""
    spec = spec.with_evaluate(**where)
    stages.preflight(spec)
    lines: list[str] = []
    ctx, reports = run_pipeline(spec, stages.STAGES, echo=lines.append, only=STAGES,
                                force=("evaluate",))
    assert [(r.name, r.ran) for r in reports] == [("train", False), ("evaluate", True)], lines
    return lines, list(ctx.outputs["evaluate"].results)


@pytest.mark.e2e
def test_two_local_workers_after_training_equal_one_process(trained):
    spec, one = trained
    lines, results = _evaluate(spec, devices=2)
    assert any("4 checkpoints scored by 2 workers" in line for line in lines), lines
    assert _scores(results) == one


@pytest.mark.e2e
def test_slurm_jobs_after_training_equal_one_process(slurm, trained):
    spec, one = trained
    lines, results = _evaluate(spec, launcher="slurm", shards=2,
                               slurm="cpus_per_task=1,timeout_min=30,poll_seconds=1")
    submitted = [line.split(":")[0] for line in lines if "submitted job" in line]
    assert submitted == ["shard 1/2", "shard 2/2"], lines
    assert any("4 checkpoints scored by 2 Slurm jobs" in line for line in lines), lines
    assert _scores(results) == one
    # where the stage ran is not part of its key: the spec's own (local) reuses every score
    lines.clear()
    _, again = run_pipeline(spec, stages.STAGES, echo=lines.append, only=STAGES)
    assert [r.ran for r in again] == [False, False], lines
