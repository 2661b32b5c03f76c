"""Resume bookkeeping without training: half-written checkpoints, a run folder's plan."""

from __future__ import annotations

import dataclasses

import pytest

from taskladder.common.errors import InputError
from taskladder.training.run import check_plan, drop_incomplete_checkpoints
from taskladder.training.spec import LadderSpec


def test_incomplete_checkpoints_are_dropped(tmp_path):
    for name, complete in (("step5", True), ("step10", False), ("step15-tmp", True)):
        (tmp_path / name / "model_and_optim").mkdir(parents=True)
        if complete:
            (tmp_path / name / ".metadata.json").write_text("{}")
    (tmp_path / "val_losses.json").write_text("{}")
    drop_incomplete_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step5", "val_losses.json"]


def test_run_folder_refuses_a_changed_plan(tmp_path):
    plan = LadderSpec.cpu_micro().plan()[0]
    check_plan(tmp_path / "r", plan)
    check_plan(tmp_path / "r", dataclasses.replace(plan, est_seconds=1.0))  # estimate only
    with pytest.raises(InputError, match=r"other settings \(lr, steps\)"):
        check_plan(tmp_path / "r", dataclasses.replace(plan, steps=plan.steps + 1, lr=1.0))


def test_olmo_cores_thread_count_does_not_leak_into_children():
    """olmo-core sets OMP_NUM_THREADS=8 on any machine; evaluation workers and Slurm jobs
    started afterwards would oversubscribe a 2-core one (and `nproc` would report 8)."""
    import os
    import subprocess
    import sys

    from training_support import DIST_VARS

    code = ("import os; from taskladder.training.run import ensure_environment; "
            "from taskladder.training.spec import LadderSpec; "
            "ensure_environment(LadderSpec.cpu_micro()); "
            "print('OMP', os.environ.get('OMP_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS | {"OMP_NUM_THREADS"}}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "OMP None" in out.stdout.splitlines(), out.stdout
