"""The per-checkpoint gate on the real 7B trajectory (peteish7_eval_full, cosine set for 5T):
silent on the clean trajectory at every checkpoint, fires within a few checkpoints of a fault
(task loss 3% or 5% worse from 30% of training on); bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest
from trajectory_support import PLANNED, faulty

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.common.facts import PAPER_LADDER
from taskladder.laws import watch
from taskladder.laws.observations import Observations
from taskladder.laws.readers import read_ladder, select_runs
from taskladder.laws.trajectory import Schedule, fit_trajectory
from taskladder.trajectory_gate import parse_schedule

TASKS = ("hellaswag", "piqa")
# the fault each task's 7B band (±4.4%, ±6.7% at 20% of training) can see (docs/trajectory.md)
FAULTS = {"hellaswag": 1.03, "piqa": 1.05}


@pytest.fixture(scope="module")
def data(olmo_ladder_dir):
    obs = read_ladder(olmo_ladder_dir)
    return select_runs(obs, PAPER_LADDER), select_runs(obs, "peteish7_eval_full")


@pytest.fixture(scope="module")
def laws(data):
    return {t: fit_trajectory(data[0], t) for t in TASKS}


def first_alarm(rows: list[dict], patience: int) -> int | None:
    """The first checkpoint (index) at which a gate run on the trajectory so far fires."""
    for k in range(1, len(rows) + 1):
        if watch.task_verdict(rows[:k], patience)["verdict"] == "drift":
            return k - 1
    return None


@pytest.mark.parametrize("task", TASKS)
def test_silent_on_the_clean_trajectory_fires_on_the_fault(data, laws, task):
    _, target = data
    sched = Schedule(PLANNED)
    clean = watch.judge(laws[task], sched, watch.checkpoints(target, task, "bpb", "7B"))
    assert first_alarm(clean, 3) is None  # at no checkpoint of the real run
    hit = faulty(target, worse=FAULTS[task])
    rows = watch.judge(laws[task], sched, watch.checkpoints(hit, task, "bpb", "7B"))
    fault = next(i for i, r in enumerate(rows) if r["D"] >= 0.3 * PLANNED)
    alarm = first_alarm(rows, 3)
    assert alarm is not None and alarm - fault < 6, (fault, alarm)
    assert [r["verdict"] for r in rows[:fault]].count("drift") == 0
    assert {r["verdict"] for r in rows if r["fraction"] < 0.1} == {"untrusted"}


def test_gate_cli_exit_1_on_the_fault(data, tmp_path, olmo_ladder_dir, capsys):
    _, target = data
    path = tmp_path / "target.csv"
    faulty(target.where(task=["hellaswag", "lm"]), worse=1.05).to_csv(path)
    out = tmp_path / "verdict.json"
    argv = ["gate", "--ladder", str(olmo_ladder_dir), "--actual", str(path), "--schedule",
            "cosine=5T", "--tasks", "hellaswag", "--metric", "loss", "--patience", "3",
            "--json", str(out)]
    assert main(argv) == 1
    doc = json.loads(out.read_text())
    t = doc["tasks"]["hellaswag"]
    assert t["verdict"] == "drift" and t["since_step"] is not None
    assert doc["rule"] == {"metric": "loss", "tolerance": "interval", "patience": 3}
    assert "DRIFT" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ("no-d", "has no token count"),
    ("backwards", "step out of order"),
    ("no-plan", "planned total is unknown"),
])
def test_bad_checkpoints_are_one_line_exit_2(data, tmp_path, olmo_ladder_dir, capsys, change,
                                             message):
    _, target = data
    t = target.where(task="hellaswag")
    D = t.D.copy()
    if change == "no-d":
        D[t.step == t.step.max()] = 0.0
    elif change == "backwards":
        D[t.step == t.step.max()] = D.min() + 1
    cols = {c: getattr(t, c) for c in ("run", "size", "N", "step", "flops", "task", "metric",
                                        "value")}
    path = tmp_path / "target.csv"
    Observations.from_columns(dict(cols, D=D)).to_csv(path)
    argv = ["gate", "--ladder", str(olmo_ladder_dir), "--actual", str(path), "--tasks",
            "hellaswag", "--metric", "loss"]
    if change != "no-plan":
        argv += ["--target-d", "5e12"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_schedule_flag_maps_to_the_laws_schedule():
    assert parse_schedule("cosine=5T,anneal=3.9T,end=3.95T", None) == Schedule(5e12, "cosine",
                                                                               3.9e12, 3.95e12)
    assert parse_schedule(None, 2e12) == Schedule(2e12)
    assert parse_schedule("cosine,anneal=1.5e12,end=1.6e12", 2e12).anneal_from == 1.5e12
    assert parse_schedule("wsd=1T", None).shape == "wsd"


@pytest.mark.parametrize("text, planned, error", [
    ("cosine", None, "planned total is unknown"),
    (None, None, "planned total is unknown"),
    ("cosine=5T,anneal=3.9T", None, "--schedule: an anneal needs both"),
    ("cosine=5T,anneal=6T,end=5T", None, "--schedule: 6e\\+12 must be > 0 and before"),
    ("cosine=abc", None, "--schedule: cosine='abc'"),
    ("cosine=5T,wsd=5T", None, "one shape"),
])
def test_schedule_flag_bad_input_is_one_line(text, planned, error):
    with pytest.raises(InputError, match=error):
        parse_schedule(text, planned)
    parse_schedule("cosine=5T,anneal=6T,end=7T", None)  # an anneal past the planned total: legal
