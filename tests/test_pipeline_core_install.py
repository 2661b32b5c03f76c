"""The core install (no torch, lm-eval or olmo-core) runs the CLI's light verbs for real, and
a verb whose extra is missing names it in one line, exit 2.

The venv is $TASKLADDER_CORE_VENV when set (.ci/run builds one with `pip install -e .`),
else one built here (about a minute; needs the package index that pip is configured with).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def core_bin(tmp_path_factory) -> Path:
    given = os.environ.get("TASKLADDER_CORE_VENV")
    if given:
        return Path(given) / "bin"
    env_dir = tmp_path_factory.mktemp("core") / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "-e", str(ROOT)]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"core install failed: {done.stderr[-2000:]}")
    return env_dir / "bin"


def _run(core_bin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run([str(core_bin / "taskladder"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_the_core_venv_has_no_engines(core_bin):
    probe = "import importlib.util as u; print([m for m in ('torch', 'lm_eval', 'olmo_core') " \
            "if u.find_spec(m)])"
    done = subprocess.run([str(core_bin / "python"), "-c", probe], capture_output=True,
                          text=True)
    assert done.stdout.strip() == "[]"
    assert Path(sys.executable).parent != core_bin


def test_help_and_gate_help_run_on_the_core(core_bin, tmp_path):
    assert _run(core_bin, "--help", cwd=tmp_path).returncode == 0
    done = _run(core_bin, "gate", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--tolerance" in done.stdout


def test_predict_runs_on_the_core(core_bin, olmo_ladder_dir, tmp_path):
    out = tmp_path / "p.json"
    done = _run(core_bin, "predict", "--ladder", str(olmo_ladder_dir), "--target", "7B-4T",
                "--tasks", "hellaswag", "--method", "paper", "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    acc = json.loads(out.read_text())["tasks"]["hellaswag"]["predicted"]["acc"]
    assert abs(100 * acc - 82.52) < 0.1  # METHOD.md section 6, as with the full install


def test_train_names_its_extra(core_bin, tmp_path):
    _assert_names_extra(_run(core_bin, "train", "--output", str(tmp_path / "o"),
                             cwd=tmp_path), "train")
    assert not (tmp_path / "o").exists()


def test_the_default_pipeline_names_its_extra_before_any_work(core_bin, tmp_path):
    _assert_names_extra(_run(core_bin, "run", "--output", str(tmp_path / "o"), cwd=tmp_path),
                        "train")
    assert not (tmp_path / "o").exists()


def _assert_names_extra(done: subprocess.CompletedProcess, extra: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"needs the '{extra}' extra" in done.stderr
    assert f"pip install 'taskladder[{extra}]'" in done.stderr
