"""Shared fixtures: the reference data in ../shared (skip when absent, fail when required),
the tiny model every eval test scores, and a running single-node Slurm."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests draw new examples on a developer's machine (and replay the failures they found
# from .hypothesis/); CI (`.ci/run`: TASKLADDER_HYPOTHESIS=ci) draws a fixed set per test, so a
# submission passes or fails on its code, not on the draw.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("TASKLADDER_HYPOTHESIS", "default"))
SLURM = ROOT / "tests" / "slurm"


def _shared_dir() -> Path:
    return Path(os.environ.get("TASKLADDER_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $TASKLADDER_SHARED); skips without it unless TASKLADDER_REQUIRE_SHARED=1."""
    path = _shared_dir()
    if not (path / "data").is_dir():
        reason = f"reference data not found at {path} (set TASKLADDER_SHARED)"
        if os.environ.get("TASKLADDER_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " but TASKLADDER_REQUIRE_SHARED=1")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def olmo_ladder_dir() -> Path:
    """The paper's released ladder evaluations (one CSV per run), vendored in the repository."""
    from taskladder.data import PAPER_LADDER_DIR

    return PAPER_LADDER_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random Olmo2 (d64, 2 layers, head_dim 32, 4096-token window) with a 1024-token BPE:
    the one tiny model every eval test scores (see tests/tiny_model.py)."""
    from tiny_model import make_tiny_olmo2

    return make_tiny_olmo2(tmp_path_factory.mktemp("tiny-olmo2"))


@pytest.fixture(scope="session")
def slurm():
    """A running single-node Slurm where it is installed (root starts it); installed only when
    asked (TASKLADDER_INSTALL_SLURM=1, as CI does), never unasked on a user's machine. Stops
    only the daemons it started."""
    asked = os.environ.get("TASKLADDER_INSTALL_SLURM") == "1"
    reason = None
    if os.geteuid() != 0:
        reason = "starting Slurm needs root (tests/slurm/start.sh)"
    elif not shutil.which("slurmctld") and not asked:
        reason = "Slurm is not installed (TASKLADDER_INSTALL_SLURM=1 installs it with apt)"
    if reason is None:
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        out = subprocess.run(["bash", str(SLURM / "start.sh")], capture_output=True, text=True,
                             timeout=600, env=env)
        if out.returncode == 3:
            reason = out.stderr.strip()
    if reason is not None:
        if os.environ.get("TASKLADDER_REQUIRE_SLURM") == "1":
            pytest.fail(reason + " but TASKLADDER_REQUIRE_SLURM=1")
        pytest.skip(reason)
    assert out.returncode == 0, out.stderr
    started = out.stdout.split()
    yield
    subprocess.run(["bash", str(SLURM / "stop.sh"), *started], check=False)
