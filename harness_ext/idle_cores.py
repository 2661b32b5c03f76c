"""How many CPU cores other processes leave idle right now: the scorer's thread count on a CPU.

Measured over a short window from the kernel's per-state CPU time (/proc/stat) while this
process sleeps, so neither its own work nor minutes-old load counts. The 1-minute load
average, used before, lags: right after the pipeline's own training it still read ~2 on the
otherwise idle 2-core box, and the scorer took one thread where it had two.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
WINDOW_S = 0.1  # 10 clock ticks per core at the usual 100 Hz: enough to tell 0, 1 or 2 idle


def idle_cores(window: float = WINDOW_S) -> float:
    """Cores idle over the next `window` seconds (0 to the core count); without /proc/stat
    (not Linux), cores minus the 1-minute load average."""
    cores = os.cpu_count() or 1
    before = cpu_ticks()
    if before is None:
        return max(0.0, cores - os.getloadavg()[0])
    time.sleep(window)
    after = cpu_ticks()
    return cores * idle_share(before, after) if after is not None else 0.0


def cpu_ticks() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all CPUs since boot, from /proc/stat's `cpu` line
    (idle and iowait count as idle), or None where it cannot be read."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[3] + ticks[4], sum(ticks)


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The idle fraction of CPU time between two `cpu_ticks` readings (1.0 when no tick
    passed: nothing ran)."""
    idle, total = after[0] - before[0], after[1] - before[1]
    return min(1.0, max(0.0, idle / total)) if total > 0 else 1.0
