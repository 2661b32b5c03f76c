"""The paper's figures as PNG files (matplotlib, Agg backend): step 1, step 2, chained, variance.

- step1.png: per task, the feature vs tokens D: each ladder size's run finals and its own
  fitted curve, the target's curve and predicted feature (star), its actual (cross) if known.
- step2.png: per task, accuracy vs the feature (smoothed checkpoints), the fitted sigmoid with
  its bootstrap band, and the target's prediction (star; actual as a cross when known).
- chained.png: per task the predicted accuracy (with chance) and the predicted loss the gate
  can judge, with intervals, coloured by their statuses; the measured values when known.
- variance.png: evaluation noise of the feature and accuracy: their SD around the linear trend
  over the last checkpoints of the largest, longest run (the title names how many).
Every per-task title carries the task's status for the target (ok, caution, unpredictable).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from taskladder.common.facts import LABELS
from taskladder.common.io import atomic_write

from .chained import ChainedFit, step1_eval, step2_eval
from .observations import Observations
from .point_fit import step_inputs
from .tasks import TaskRows

STATUS_COLORS = {"ok": "tab:green", "caution": "tab:orange", "unpredictable": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, n: int):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _log_x(ax) -> None:
    """A log axis labelled at 1, 2 and 5 x 10^k (at most 6 labels, so they never overlap):
    more than one label even where the data span less than a decade."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    subs = (1.0,) if high / low > 1e3 else (1.0, 2.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="both", labelsize=7)


def _size_names(obs: Observations) -> dict[float, str]:
    """{N: the ladder's size name} for legends ("190M" rather than N=1.9e+08)."""
    return {float(n): str(size) for size, n in zip(obs.size, obs.N, strict=True)}


def _title(ax, task: str, what: str, report: dict | None, key: str = "status") -> None:
    """The panel's title with the status of the prediction it shows (`key`: ``loss_status``
    on step 1's panels, the accuracy's ``status`` elsewhere)."""
    entry = (report or {}).get("tasks", {}).get(task, {})
    status = entry.get(key)
    text = f"{LABELS.get(task, task)}: {what}" + (f" [{status}]" if status else "")
    ax.set_title(text, fontsize=9, color=STATUS_COLORS.get(status, "black"))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"), mode="wb")


def _panels(fits: dict[str, ChainedFit], path: Path, draw) -> Path:
    """One panel per task, drawn by `draw(ax, task, fit)`."""
    fig, axes = _grid(_pyplot(), len(fits))
    for ax, (task, fit) in zip(axes, fits.items(), strict=False):
        draw(ax, task, fit)
    return _save(fig, path)


def plot_step1(
    fits: dict[str, ChainedFit], obs: Observations, target: dict | None, path: Path, report=None
) -> Path:
    names = _size_names(obs)

    def draw(ax, task: str, fit: ChainedFit) -> None:
        d1, _ = step_inputs(TaskRows.of_fit(obs, fit), fit.settings)
        params = np.array(fit.step1.params)
        for n in sorted(set(d1.N.tolist())):
            m = d1.N == n
            grid = np.geomspace(d1.D[m].min() / 1.3, d1.D[m].max() * 1.3, 60)
            curve = step1_eval(fit.step1.form, params, np.full_like(grid, n), grid)
            line = ax.plot(grid, curve, lw=1)[0]
            name = names.get(float(n), f"N={n:.3g}")
            ax.scatter(d1.D[m], d1.y[m], s=14, color=line.get_color(), label=name)
        if target:
            p = fit.predict(target["N"], target["D"])
            grid = np.geomspace(d1.D.min(), target["D"] * 1.3, 60)
            curve = step1_eval(fit.step1.form, params, np.full_like(grid, target["N"]), grid)
            ax.plot(grid, curve, "k--", lw=1)
            err = [
                [p["loss"].item() - p["loss_low"].item()],
                [p["loss_high"].item() - p["loss"].item()],
            ]
            ax.errorbar(
                [target["D"]],
                [p["loss"].item()],
                yerr=err,
                fmt="*",
                color="k",
                ms=10,
                label=f"{target['name']} predicted",
            )
            actual = _actual(report, task)
            if actual and "loss" in actual:
                ax.plot(target["D"], actual["loss"], "X", ms=8, color="tab:purple", label="actual")
        _log_x(ax)
        _title(ax, task, fit.x_metric, report, key="loss_status")
        ax.set_xlabel("tokens D", fontsize=8)
        ax.set_ylabel(f"{fit.x_task} {fit.x_metric}", fontsize=8)
        ax.legend(fontsize=6)

    return _panels(fits, path, draw)


def _actual(report: dict | None, task: str) -> dict | None:
    return (report or {}).get("tasks", {}).get(task, {}).get("actual")


def plot_step2(
    fits: dict[str, ChainedFit], obs: Observations, target: dict | None, path: Path, report=None
) -> Path:
    def draw(ax, task: str, fit: ChainedFit) -> None:
        _, d2 = step_inputs(TaskRows.of_fit(obs, fit), fit.settings)
        real = d2.runs != "<anchor>"
        ax.scatter(d2.x[real], d2.y[real], s=3, alpha=0.4, label="ladder checkpoints")
        p = fit.predict(target["N"], target["D"]) if target else None
        actual = _actual(report, task)
        lows = [d2.x[real].min()] + ([p["loss"].item()] if p else [])
        lows += [actual["loss"]] if actual and "loss" in actual else []
        grid = np.linspace(min(lows) * 0.95, d2.x[real].max() * 1.05, 200)
        ax.plot(
            grid,
            step2_eval(fit.step2.form, np.array(fit.step2.params), grid),
            "k-",
            lw=1,
            label="fit",
        )
        if fit.step2.draws:
            band = step2_eval(fit.step2.form, np.array(fit.step2.draws), grid)
            q = (1 - fit.settings.level) / 2 * 100
            ax.fill_between(
                grid, *np.nanpercentile(band, [q, 100 - q], axis=0), color="k", alpha=0.15, lw=0
            )
        if p:
            err = [
                [p["acc"].item() - p["acc_low"].item()],
                [p["acc_high"].item() - p["acc"].item()],
            ]
            ax.errorbar(
                [p["loss"].item()],
                [p["acc"].item()],
                yerr=err,
                fmt="r*",
                ms=10,
                label=f"{target['name']} predicted" + (" (forms weighted)" if fit.members else ""),
            )
        if actual and "loss" in actual:
            ax.plot(actual["loss"], actual["acc"], "X", ms=8, color="tab:purple", label="actual")
        ax.axhline(fit.chance, color="grey", lw=0.8, ls=":", label="chance")
        ax.tick_params(axis="both", labelsize=7)
        _title(ax, task, fit.acc_metric, report)
        ax.set_xlabel(f"{fit.x_task} {fit.x_metric}", fontsize=8)
        ax.set_ylabel(fit.acc_metric, fontsize=8)
        ax.legend(fontsize=6)

    return _panels(fits, path, draw)


def plot_chained(report: dict, path: Path, chance: dict[str, float] | None = None) -> Path:
    """Per task, the predicted accuracy (left) and the predicted loss the gate may judge
    (right, the law's feature) with their intervals, coloured by their statuses; the measured
    values as crosses and each task's chance accuracy as a grey bar."""
    plt = _pyplot()
    tasks = list(report["tasks"])
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(2 * (1.0 * len(tasks) + 2.5), 4))
    x = np.arange(len(tasks))
    entries = [report["tasks"][t] for t in tasks]
    for ax, (key, low_key, high_key), status_key, scale in (
        (acc_ax, ("acc", "low", "high"), "status", 100.0),
        (loss_ax, ("loss", "loss_low", "loss_high"), "loss_status", 1.0),
    ):
        value = np.array([e["predicted"].get(key, np.nan) for e in entries], float) * scale
        low = np.array([e["predicted"].get(low_key, np.nan) for e in entries], float) * scale
        high = np.array([e["predicted"].get(high_key, np.nan) for e in entries], float) * scale
        status = [e.get(status_key) or e["status"] for e in entries]
        for st, color in STATUS_COLORS.items():
            i = [j for j, s in enumerate(status) if s == st]
            if i:
                ax.errorbar(x[i], value[i], yerr=[value[i] - low[i], high[i] - value[i]],
                            fmt="o", capsize=3, color=color, label=f"predicted ({st})")
        act = [(j, e["actual"][key]) for j, e in enumerate(entries)
               if e.get("actual") and e["actual"].get(key) is not None]
        if act:
            ax.plot([j for j, _ in act], [v * scale for _, v in act], "X", color="tab:purple",
                    ms=8, label="measured")
        ax.set_xticks(x, [f"{LABELS.get(t, t)}\n[{s}]" for t, s in zip(tasks, status,
                                                                        strict=True)],
                      rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("task [status]", fontsize=8)
    if chance:
        acc_ax.plot(x, [100 * chance.get(t, np.nan) for t in tasks], "_", ms=18, mew=2,
                    color="grey", label="chance")
    feature = {f"{e['feature']['task']}/{e['feature']['metric']}" for e in entries
               if e.get("feature")}
    acc_ax.set_ylabel("accuracy (points)", fontsize=8)
    loss_ax.set_ylabel("predicted loss: " + (", ".join(sorted(feature)) if len(feature) < 3
                                             else "each task's feature"), fontsize=8)
    name = f"{report['target']['name']} ({report['method']})"
    acc_ax.set_title(f"chained prediction of accuracy, {name}", fontsize=9)
    loss_ax.set_title(f"step 1: the task loss the gate can judge, {name}", fontsize=9)
    for ax in (acc_ax, loss_ax):
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_variance(table: dict[str, dict], path: Path) -> Path:
    """Evaluation noise per task: the SD of the last checkpoints around their linear trend
    (the plain SD would count the training still improving), feature relative to its mean."""
    plt = _pyplot()
    tasks = list(table)
    first = table[tasks[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, label in (
        (axes[0], "loss", "feature noise (SD around trend / mean)"),
        (axes[1], "acc", "accuracy noise (SD around trend, points)"),
    ):
        values = [table[t]["loss_noise_cv"] if key == "loss" else 100 * table[t]["acc_noise"]
                  for t in tasks]
        ax.bar(range(len(tasks)), values)
        ax.set_xticks(range(len(tasks)), [LABELS.get(t, t) for t in tasks], rotation=30,
                      ha="right", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.set_title(f"{label.split(' (')[0]}, last {first['checkpoints']} checkpoints of "
                     f"{first['run']}", fontsize=9)
    return _save(fig, path)


def write_plots(
    directory: str | Path,
    fits: dict[str, ChainedFit],
    obs: Observations,
    target: dict | None = None,
    report: dict | None = None,
) -> list[Path]:
    """All figures for a set of fits; the chained plot needs a prediction report."""
    from .variants import variance_table

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_step1(fits, obs, target, out / "step1.png", report),
        plot_step2(fits, obs, target, out / "step2.png", report),
    ]
    if report:
        paths.append(plot_chained(report, out / "chained.png",
                                  {t: f.chance for t, f in fits.items()}))
    # the paper's analysis is of task bpb; a ladder without it shows each fit's feature
    features = {
        t: (f.x_task, f.x_metric)
        for t, f in fits.items()
        if not len(obs.where(task=t, metric="bpb"))
    }
    paths.append(
        plot_variance(variance_table(obs, list(fits), features=features), out / "variance.png")
    )
    return paths
