"""The pipeline's evaluate stage on a real single-node Slurm (`evaluate.launcher: slurm`, as
`taskladder run --launcher slurm --shards 2 --slurm ...` sets it): a tiny trained ladder's
checkpoints scored by a job array, the merged results equal to one local process's, and the
stage's key blind to where it ran (switching back to local reuses every score)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskladder import stages
from taskladder.config import load_spec
from taskladder.outputs import Trained
from taskladder.pipeline import run_pipeline

# One width, two lengths, two kept checkpoints each: four checkpoints, trained in seconds.
SPEC = """
name: tiny-slurm
ladder:
  train: cpu-micro-ladder
  overrides:
    sizes:
      - {{name: d32, d_model: 32, n_layers: 1, n_heads: 1, hidden_size_multiple_of: 32,
         batch_sequences: 8}}
    multipliers: [0.01, 0.02]
    checkpoints_per_run: 2
    end_checkpoints: 0
evaluate: {{tasks: [piqa], limit: 4}}
target: {{name: t, N: 1.0e+9, D: 2.0e+10}}
output_dir: {out}
"""
STAGES = ("train", "evaluate")


def _scores(paths) -> dict:
    """run/step -> (results, configs) of each results file."""
    out = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        out[f"{data['taskladder']['run']}/{data['taskladder']['step']}"] = (data["results"],
                                                                            data["configs"])
    return out


@pytest.mark.e2e
def test_the_evaluate_stage_on_slurm_equals_one_local_process(slurm, tmp_path):
    from taskladder.harness_ext.runner import evaluate_many

    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(SPEC.format(out=tmp_path / "out"))
    local = load_spec(str(spec_file))
    spec = local.with_evaluate(launcher="slurm", shards=2,
                               slurm="cpus_per_task=1,timeout_min=30,poll_seconds=1")
    stages.preflight(spec)
    lines: list[str] = []
    ctx, reports = run_pipeline(spec, stages.STAGES, echo=lines.append, only=STAGES)
    assert [r.name for r in reports] == list(STAGES) and all(r.ran for r in reports), lines
    submitted = [line.split(":")[0] for line in lines if "submitted job" in line]
    assert submitted == ["shard 1/2", "shard 2/2"], lines
    assert any("4 checkpoints scored by 2 Slurm jobs" in line for line in lines), lines
    scored = ctx.outputs["evaluate"].results
    models = [Path(m.hf_dir) for m in ctx.output(Trained).models]
    assert len(scored) == len(models) == 4

    one = evaluate_many(models, ["piqa"], 4, tmp_path / "one", echo=lambda line: None)
    assert sorted(_scores(scored)) == sorted(_scores(one)) and len(_scores(one)) == 4
    assert _scores(scored) == _scores(one)

    # where the stage ran is not part of its key: the local spec reuses every score
    lines.clear()
    _, again = run_pipeline(local, stages.STAGES, echo=lines.append, only=STAGES)
    assert [r.ran for r in again] == [False, False], lines
