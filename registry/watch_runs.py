"""A watched target in MLflow: one run per target training run, metrics by checkpoint step.

Per task and step: `<task>/bpb` (measured task loss), `<task>/bpb_pred`, `<task>/bpb_low`,
`<task>/bpb_high` (the trajectory band), the same for the accuracy (`<task>/acc*`), and
`<task>/verdict` (1 drift, 0 pass, -1 untrusted); `verdict` (1 when the gate drifts) and
`tokens` (tokens seen) for the run; its params hold N and the planned tokens. MLflow's run page
plots each metric against the step: the measured points over the band. `read_run` turns such
a run back into an observation table (`taskladder gate --actual mlflow:RUN_ID`).
"""

from __future__ import annotations

from taskladder.common.errors import InputError
from taskladder.laws.observations import Observations
from taskladder.laws.tasks import accuracy_metric

from .store import Store

EXPERIMENT = "taskladder-target-watch"
CODES = {"drift": 1.0, "pass": 0.0, "untrusted": -1.0}


def start(store: Store, target: str, run: str, params: dict[str, str]) -> str:
    """A new watch run for training run `run` of `target`; its id."""
    from mlflow.entities import Param

    eid = store.experiment_id(EXPERIMENT)
    mlrun = store.create_run(eid, f"{target}:{run}", {"target": target, "training_run": run})
    rid = mlrun.info.run_id
    store.call("log_batch", rid, params=[Param(k, str(v)) for k, v in params.items()])
    return rid


def log_checkpoint(store: Store, run_id: str, step: int, tokens: float, tasks: dict[str, dict],
                   passed: bool) -> None:
    """One checkpoint's measured values, bands and verdicts (`tasks`: task -> {"loss": row,
    "acc": row} with rows as `laws.watch.judge` writes them)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric("verdict", 0.0 if passed else 1.0, now, step),
               Metric("tokens", float(tokens), now, step)]
    for task, kinds in tasks.items():
        for kind, row in kinds.items():
            name = "bpb" if kind == "loss" else "acc"
            values = {"": row["measured"], "_pred": row["predicted"], "_low": row["low"],
                      "_high": row["high"]}
            metrics += [Metric(f"{task}/{name}{k}", float(v), now, step)
                        for k, v in values.items() if v is not None]
        verdict = kinds["loss"]["verdict"] if "loss" in kinds else kinds["acc"]["verdict"]
        metrics.append(Metric(f"{task}/verdict", CODES[verdict], now, step))
    store.call("log_batch", run_id, metrics=metrics)


def finish(store: Store, run_id: str, status: str = "FINISHED") -> None:
    store.call("set_terminated", run_id, status)


def read_run(store: Store, run_id: str) -> Observations:
    """The measured task losses and accuracies of a watch run, one row per task, metric and
    step (N from its params, D from its `tokens` metric)."""
    from mlflow.exceptions import MlflowException

    where = f"mlflow:{run_id}"
    try:
        run = store.call("get_run", run_id)
    except MlflowException:
        raise InputError(f"--actual {where}: no such run in {store.uri}") from None
    if "N" not in run.data.params:
        raise InputError(f"--actual {where}: not a watch run (no param 'N')")
    N = float(run.data.params["N"])
    tokens = {m.step: m.value for m in store.call("get_metric_history", run_id, "tokens")}
    records = []
    for key in sorted(run.data.metrics):
        task, _, kind = key.partition("/")
        if kind not in ("bpb", "acc"):
            continue
        for m in store.call("get_metric_history", run_id, key):
            if m.step not in tokens:
                raise InputError(f"--actual {where}: step {m.step} has no token count")
            D = tokens[m.step]
            records.append({"run": run.data.tags.get("training_run", run_id), "size": "",
                            "N": N, "D": D, "step": m.step, "flops": 6 * N * D, "task": task,
                            "metric": "bpb" if kind == "bpb" else accuracy_metric(task),
                            "value": m.value})
    return Observations.from_records(records, where=where)
