"""The watched target's checkpoints against their trajectory band, one panel per task (PNG).

Reads the trajectory gate's document (`taskladder gate --ladder ... --json`, or the live
watch's `watch.json`): per checkpoint the measured value, the predicted one and the band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taskladder.common.facts import LABELS
from taskladder.common.io import atomic_write

from .plots import _grid, _pyplot

COLORS = {"pass": "tab:green", "drift": "tab:red", "untrusted": "tab:gray"}


def plot_watch(doc: dict, path: str | Path) -> Path:
    plt = _pyplot()
    tasks = doc["tasks"]
    fig, axes = _grid(plt, len(tasks))
    for ax, (task, t) in zip(axes, tasks.items(), strict=False):
        rows = [r for r in t["checkpoints"] if r["D"] > 0]  # log axis: not the initial model
        judged = [r for r in rows if r["predicted"] is not None]
        lo = hi = None
        if judged:  # the band's range, not the untrusted start of training, sets the scale
            lo = min(min(r["low"], r["measured"]) for r in judged)
            hi = max(max(r["high"], r["measured"]) for r in judged)
            lo, hi = lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)
            ax.set_ylim(lo, hi)
            D = np.array([r["D"] for r in judged])
            ax.fill_between(D, [r["low"] for r in judged], [r["high"] for r in judged],
                            color="tab:blue", alpha=0.2, label="90% band")
            ax.plot(D, [r["predicted"] for r in judged], color="tab:blue", lw=1,
                    label="predicted")
        for verdict, color in COLORS.items():
            pts = [r for r in rows if r["verdict"] == verdict]
            above = [r for r in pts if hi is not None and r["measured"] > hi]
            below = [r for r in pts if lo is not None and r["measured"] < lo]
            inside = [r for r in pts if r not in above and r not in below]
            if inside:
                ax.scatter([r["D"] for r in inside], [r["measured"] for r in inside], s=9,
                           color=color, label=verdict, zorder=3)
            for off, edge, marker in ((above, hi, "^"), (below, lo, "v")):
                if off:  # off the scale (the untrusted start): a marker at the edge it passes
                    ax.scatter([r["D"] for r in off], [edge] * len(off), s=14, marker=marker,
                               color=color, zorder=3, clip_on=False,
                               label=f"{verdict}, off the scale")
        ax.set_xscale("log")
        ax.set_xlabel("tokens seen", fontsize=8)
        ax.set_ylabel(t["metric"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{LABELS.get(task, task)}: {t['verdict']}", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110), mode="wb")
    plt.close(fig)
    return path
