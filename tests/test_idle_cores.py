"""The scorer's idle-core count: the share of idle clock ticks over a short window, fewer
idle cores while other processes spin, and the load-average fallback without /proc/stat."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from taskladder.harness_ext import idle_cores as ic


def test_idle_share_counts_ticks_between_readings():
    assert ic.idle_share((100, 1000), (130, 1040)) == pytest.approx(0.75)
    assert ic.idle_share((100, 1000), (100, 1000)) == 1.0  # no tick passed: nothing ran
    assert ic.idle_share((100, 1000), (100, 1200)) == 0.0


def test_idle_and_iowait_ticks_count_as_idle(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  10 0 5 70 15 0 0 0 3 0\ncpu0 1 0 1 1 1 0 0 0 0 0\n")
    monkeypatch.setattr(ic, "PROC_STAT", stat)
    assert ic.cpu_ticks() == (85, 100)


def test_without_proc_stat_cores_minus_load_average(tmp_path, monkeypatch):
    monkeypatch.setattr(ic, "PROC_STAT", tmp_path / "absent")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 3.0, 3.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert ic.idle_cores() == pytest.approx(1.5)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(not ic.PROC_STAT.exists(), reason="no /proc/stat (not Linux)")
def test_fewer_idle_cores_while_every_core_spins():
    cores = os.cpu_count() or 1
    assert 0 <= ic.idle_cores() <= cores
    busy = [mp.get_context("fork").Process(target=_spin, args=(1.5,)) for _ in range(cores)]
    for p in busy:
        p.start()
    try:
        time.sleep(0.3)
        assert ic.idle_cores(0.3) < cores - 0.5
    finally:
        for p in busy:
            p.join()
