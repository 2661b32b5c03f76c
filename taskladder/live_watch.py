"""The live watch of a target that taskladder trains (pipeline `gate.watch`): each kept
checkpoint is scored on the spec's tasks with the fast scorer and judged against its
trajectory band; MLflow gets the measured points over the band by step (registry/watch_runs.py),
`watch.json` the gate's document, and a drift may stop the run (`gate.stop_on_drift`).

The training side (training/callbacks.py `WatchCallback`) calls `LiveWatch.judge` after the
checkpoint is saved and exported; the target's schedule is its own plan (cosine over the
planned tokens, the ladder's shape). The pipeline's target stage and `train --target --ladder`
share `watchable_laws` and `watching`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from taskladder.common.errors import InputError
from taskladder.common.io import write_json
from taskladder.laws import watch
from taskladder.laws.observations import Observations
from taskladder.laws.trajectory import Schedule, TrajectoryLaw, fit_trajectory
from taskladder.registry import watch_runs
from taskladder.registry.store import Store
from taskladder.trajectory_gate import gate_checkpoints, target_checkpoints


@dataclass
class LiveWatch:
    """Judges a training run's checkpoints as they come (see module docstring)."""

    laws: dict[str, TrajectoryLaw]
    score: Callable[[Path], Observations]  # an exported checkpoint -> its evaluations
    target: str
    out: Path
    metric: str = "loss"
    tolerance: float | str = "interval"
    patience: int = 3
    stop_on_drift: bool = False
    store: Store | None = None
    seen: list[Observations] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # training run -> MLflow run id
    document: dict | None = None  # the gate's document after the latest checkpoint

    def judge(self, plan, step: int, hf_dir: Path) -> str:
        """Score the checkpoint, gate every checkpoint so far; `drift` or `pass`."""
        self.seen.append(self.score(hf_dir))
        target = Observations.concat(self.seen).where(run=plan.run)
        schedule = Schedule(float(plan.tokens))
        tasks = list(self.laws)
        doc = gate_checkpoints(self.laws, target_checkpoints(target, tasks, self.metric, plan.run),
                               schedule, self.metric, self.tolerance, self.patience)
        doc["target"], doc["run"] = self.target, plan.run
        self.document = doc
        write_json(self.out / "watch.json", doc)
        if self.store is not None:
            self._log(plan, step, target, schedule, doc)
        return "pass" if doc["passed"] else "drift"

    def _log(self, plan, step: int, target: Observations, schedule: Schedule, doc: dict) -> None:
        """Both measures of this checkpoint (the loss and the accuracy band) to MLflow."""
        if plan.run not in self.runs:
            self.runs[plan.run] = watch_runs.start(self.store, self.target, plan.run, {
                "metric": self.metric, "tolerance": self.tolerance, "patience": self.patience,
                "planned_tokens": plan.tokens, "N": plan.N, "tasks": ",".join(self.laws)})
        rows, tasks = {}, list(self.laws)
        other = "acc" if self.metric == "loss" else "loss"
        for task, law in self.laws.items():
            mine = doc["tasks"][task]["checkpoints"][-1]
            rows[task] = {self.metric: mine}
            m = law.acc_metric if other == "acc" else law.loss_metric
            try:
                cp = watch.checkpoints(target, task, m, plan.run)
            except InputError:  # the scorer gave only the gated measure
                continue
            rows[task][other] = watch.judge(law, schedule, cp, other)[-1]
        tokens = doc["tasks"][tasks[0]]["checkpoints"][-1]["D"]
        watch_runs.log_checkpoint(self.store, self.runs[plan.run], step, tokens, rows,
                                  doc["passed"])

    def close(self, status: str = "FINISHED") -> None:
        for rid in self.runs.values():
            watch_runs.finish(self.store, rid, status)


def watchable_laws(observations: Observations, tasks: list[str],
             echo: Callable[[str], object]) -> dict[str, TrajectoryLaw]:
    """The ladder's trajectory law of each task it can back; the others are named, not
    watched (the gate's `trajectory_gate.fit_laws` refuses instead: a gated task must fit)."""
    laws = {}
    for task in tasks:
        try:
            laws[task] = fit_trajectory(observations, task)
        except InputError as exc:
            echo(f"watch: {task} not watched ({exc})")
    if not laws:
        echo("watch: no task's trajectory can be fitted on this ladder; not watched")
    return laws


@contextmanager
def watching(live: LiveWatch | None, plot: Path) -> Iterator[LiveWatch | None]:
    """Around the target's training: its MLflow runs end KILLED if training fails (a drift
    stop included), else FINISHED with the measured points over the band drawn to `plot`."""
    try:
        yield live
    except BaseException:
        if live is not None:
            live.close("KILLED")
        raise
    if live is not None:
        live.close()
        if live.document is not None:
            from taskladder.laws.trajectory_plots import plot_watch

            plot_watch(live.document, plot)
