"""The paper's figures as PNG files (matplotlib, Agg backend): step 1, step 2, chained, variance.

- step1.png: per task, task loss vs tokens D for each ladder size (points: run finals), the
  fitted curves, and the target's predicted loss (star).
- step2.png: per task, accuracy vs task loss (smoothed checkpoints), the fitted sigmoid with
  its bootstrap band, and the target's prediction (star; actual as a cross when known).
- chained.png: predicted accuracy with interval vs actual, per task.
- variance.png: checkpoint-to-checkpoint SD of task loss and accuracy (largest, longest run).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from taskladder.common.facts import LABELS

from .chained import ChainedFit, _step_inputs, step1_eval, step2_eval
from .observations import Observations


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, n: int):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def plot_step1(fits: dict[str, ChainedFit], obs: Observations, target: dict | None, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = _grid(plt, len(fits))
    for ax, (task, fit) in zip(axes, fits.items(), strict=False):
        d1, _ = _step_inputs(obs, task, fit.settings)
        d_hi = target["D"] if target else d1.D.max()
        grid = np.geomspace(d1.D.min() / 1.5, d_hi * 1.5, 100)
        for n in sorted(set(d1.N.tolist())):
            m = d1.N == n
            line = ax.plot(grid, step1_eval(fit.step1.form, np.array(fit.step1.params), np.full_like(grid, n), grid), lw=1)[0]
            ax.scatter(d1.D[m], d1.y[m], s=14, color=line.get_color(), label=f"N={n:.3g}")
        if target:
            p = fit.predict(target["N"], target["D"])
            ax.plot(grid, step1_eval(fit.step1.form, np.array(fit.step1.params), np.full_like(grid, target["N"]), grid), "k--", lw=1)
            ax.errorbar([target["D"]], [p["loss"]], yerr=[[p["loss"] - p["loss_low"]], [p["loss_high"] - p["loss"]]],
                        fmt="*", color="k", ms=10, label=target["name"])
        ax.set_xscale("log")
        ax.set_title(f"{LABELS.get(task, task)}: {fit.x_metric}")
        ax.set_xlabel("tokens D")
        ax.set_ylabel(f"{fit.x_task} {fit.x_metric}")
        ax.legend(fontsize=6)
    return _save(fig, path)


def plot_step2(fits: dict[str, ChainedFit], obs: Observations, target: dict | None, path: Path,
               actual: dict | None = None) -> Path:
    plt = _pyplot()
    fig, axes = _grid(plt, len(fits))
    for ax, (task, fit) in zip(axes, fits.items(), strict=False):
        _, d2 = _step_inputs(obs, task, fit.settings)
        real = d2.runs != "<anchor>"
        ax.scatter(d2.x[real], d2.y[real], s=3, alpha=0.4, label="ladder checkpoints")
        lo = min(d2.x[real].min(), fit.predict(target["N"], target["D"])["loss"].item() if target else np.inf)
        grid = np.linspace(lo * 0.9, d2.x[real].max() * 1.05, 200)
        ax.plot(grid, step2_eval(fit.step2.form, np.array(fit.step2.params), grid), "k-", lw=1, label="fit")
        if fit.step2.draws:
            band = step2_eval(fit.step2.form, np.array(fit.step2.draws), grid)
            q = (1 - fit.settings.level) / 2 * 100
            ax.fill_between(grid, *np.nanpercentile(band, [q, 100 - q], axis=0), color="k", alpha=0.15, lw=0)
        if target:
            p = fit.predict(target["N"], target["D"])
            ax.plot(p["loss"], p["acc"], "r*", ms=10, label=f"{target['name']} predicted")
        a = (actual or {}).get(task)
        if a and "loss" in a:
            ax.plot(a["loss"], a["acc"], "gX", ms=8, label="actual")
        ax.set_title(LABELS.get(task, task))
        ax.set_xlabel(f"{fit.x_metric}")
        ax.set_ylabel(fit.acc_metric)
        ax.legend(fontsize=6)
    return _save(fig, path)


def plot_chained(report: dict, path: Path) -> Path:
    plt = _pyplot()
    tasks = list(report["tasks"])
    fig, ax = plt.subplots(figsize=(1.1 * len(tasks) + 2, 3.5))
    x = np.arange(len(tasks))
    pred = np.array([report["tasks"][t]["predicted"]["acc"] for t in tasks]) * 100
    low = np.array([report["tasks"][t]["predicted"]["low"] for t in tasks]) * 100
    high = np.array([report["tasks"][t]["predicted"]["high"] for t in tasks]) * 100
    ax.errorbar(x, pred, yerr=[pred - low, high - pred], fmt="o", capsize=3, label="predicted")
    act = [report["tasks"][t].get("actual") for t in tasks]
    if any(act):
        ax.plot([i for i, a in enumerate(act) if a], [a["acc"] * 100 for a in act if a], "gX", ms=8, label="actual")
    ax.set_xticks(x, [LABELS.get(t, t) for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (points)")
    ax.set_title(f"chained prediction, {report['target']['name']} ({report['method']})")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_variance(table: dict[str, dict], path: Path) -> Path:
    plt = _pyplot()
    tasks = list(table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, label in ((axes[0], "loss_cv", "task loss SD/mean"), (axes[1], "acc_sd", "accuracy SD")):
        ax.bar(range(len(tasks)), [table[t][key] for t in tasks])
        ax.set_xticks(range(len(tasks)), [LABELS.get(t, t) for t in tasks], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{label} (last 10 checkpoints of {table[tasks[0]]['run']})", fontsize=9)
    return _save(fig, path)


def write_plots(directory: str | Path, fits: dict[str, ChainedFit], obs: Observations,
                target: dict | None = None, report: dict | None = None) -> list[Path]:
    """All figures for a set of fits; the chained plot needs a prediction report."""
    from .variants import variance_table

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    actual = {t: e["actual"] for t, e in (report or {}).get("tasks", {}).items() if "actual" in e}
    paths = [plot_step1(fits, obs, target, out / "step1.png"),
             plot_step2(fits, obs, target, out / "step2.png", actual)]
    if report:
        paths.append(plot_chained(report, out / "chained.png"))
    paths.append(plot_variance(variance_table(obs, list(fits)), out / "variance.png"))
    return paths
