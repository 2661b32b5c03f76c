"""Trajectory laws (laws/trajectory.py) on the paper's released ladder: schedules, backtests,
JSON round trip. The per-task figures are benchmarks/bench_trajectory.py's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskladder.common.errors import InputError
from taskladder.common.facts import PAPER_LADDER
from taskladder.laws import trajectory as tj
from taskladder.laws.readers import read_ladder, select_runs


@pytest.fixture(scope="module")
def ladder(olmo_ladder_dir):
    return select_runs(read_ladder(olmo_ladder_dir), PAPER_LADDER)


@pytest.fixture(scope="module")
def law(ladder):
    return tj.fit_trajectory(ladder, "hellaswag")


def test_schedule_places_checkpoints_and_says_why_not():
    s = tj.Schedule(5e12, anneal_from=3.9e12, end=3.95e12)
    frac, why = s.place([1e11, 1e12, 3.8e12, 3.92e12, 3.95e12])
    assert why[0].startswith("before 10%")
    assert why[1] is None and why[2] is None and frac[1] == pytest.approx(0.2)
    assert "anneal" in why[3]
    assert why[4] is None and frac[4] == 1.0  # the anneal's end: a completed schedule
    frac, why = tj.Schedule(1e12).place([5e11, 1.2e12])
    assert why == [None, "past the planned total"]
    _, why = tj.Schedule(1e12, "wsd").place([5e11])
    assert "not the ladder's cosine" in why[0]


@pytest.mark.parametrize("fields, error", [
    ({"planned": 0.0}, "schedule.planned: 0.0"),
    ({"planned": float("nan")}, "schedule.planned: nan"),
    ({"planned": 5e12, "anneal_from": 3.9e12}, "schedule.anneal_from: .*needs both"),
    ({"planned": 5e12, "anneal_from": 4e12, "end": 3.9e12}, "schedule.anneal_from: 4e\\+12"),
])
def test_schedule_bad_fields_name_the_field(fields, error):
    with pytest.raises(InputError, match=error):
        tj.Schedule(**fields)


def test_largest_size_trajectory_backtest(ladder):
    """1B's checkpoints predicted from 190M-760M: within 1.5% on average from 10% of each
    schedule on (measured 0.67%)."""
    bt = tj.backtest(ladder, "hellaswag")["largest-size"]
    assert sorted(bt) == ["1B-10xC", "1B-1xC", "1B-2xC", "1B-5xC"]
    err = np.concatenate([np.abs(r["loss_pred"] / r["loss"] - 1) for r in bt.values()])
    assert err.mean() < 0.015
    assert min(r["fraction"].min() for r in bt.values()) >= tj.START - 1e-9


def test_schedule_fraction_matters(law):
    """At the same tokens seen, a run early in a long schedule (higher LR) has a higher
    loss than one at the end of a short schedule."""
    N, D = 1.28e9, 2.5e10
    early, done = law.predict(N, D, 0.1)["bpb"], law.predict(N, D, 1.0)["bpb"]
    assert early > done


def test_band_and_json_round_trip(law):
    again = tj.TrajectoryLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    N, D, f = 6.9e9, np.array([5e11, 2e12, 3.9e12]), np.array([0.1, 0.4, 0.78])
    p, q = law.predict(N, D, f), again.predict(N, D, f)
    for k in p:
        np.testing.assert_allclose(p[k], q[k])
    assert np.all(p["bpb_low"] < p["bpb"]) and np.all(p["bpb"] < p["bpb_high"])
    assert np.all(p["acc_low"] < p["acc"]) and np.all(p["acc"] < p["acc_high"])
    assert np.all(np.diff(p["bpb"]) < 0)  # the loss falls along the schedule
    # farther beyond the ladder, a wider band
    near = law.predict(1.3e9, 1e11, 0.5)
    assert (p["bpb_high"][0] / p["bpb"][0]) > near["bpb_high"] / near["bpb"]
    with pytest.raises(InputError, match="schema"):
        tj.TrajectoryLaw.from_dict({"schema": "x"})
