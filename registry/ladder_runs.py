"""Ladder results in MLflow: one run per ladder run, one experiment per ladder, curves by step.

Params: size, N, planned_D (planned tokens: 20 x multiplier x N for a "<m>xC" run, else the
tokens seen; the metric `D` is the tokens seen at each checkpoint), multiplier,
`<task>/n_questions` where it is one number, and where the caller knows them tokenizer and
corpus_hash. A param is fixed
once logged (a run still training logs checkpoint by checkpoint; a param not known at first can
be added later, a different value is refused). Metrics are keyed `<task>/<metric>`
(e.g. `arc_easy/acc_norm`, `lm/ce_c4_en`) plus `D` and `flops`, logged at each checkpoint step
with a fixed timestamp per run. Only (metric, step) pairs not yet in the run are sent, and a run
whose rows were logged already is skipped: logging the same observations again (a retry, a
re-import) adds nothing, and new checkpoints or tasks extend the curves.
`registered_ladder` turns the runs back into the observation table the law engine reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from taskladder.common.errors import InputError
from taskladder.laws.observations import Observations

from .store import Store

EXPERIMENT_PREFIX = "taskladder-ladder-"
RUN_TAG = "taskladder.run"
LADDER_TAG = "taskladder.ladder"
ROWS_TAG = "taskladder.rows_hash"  # content hash of the rows last logged in full
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_MULTIPLIER_RE = re.compile(r"-(\d+(?:\.\d+)?)xC\b")
_BATCH = 1000  # MLflow's limit of metrics per log_batch
TRAIN_LOSS = "train/loss"  # the training loss curve, by step
COUNT = "n_questions"  # a task's question count: a run param when constant


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InputError(f"{kind} {value!r}: use letters, digits, '_', '.', '-' (max 100)")
    return value


def experiment_name(ladder: str) -> str:
    return EXPERIMENT_PREFIX + check_name("ladder name", ladder)


def _planned(run: str, N: float, D_seen: float) -> tuple[str, float]:
    """(multiplier, planned D): from a "<m>xC" run name (D = 20 m N, Chinchilla-optimal x m),
    else from the tokens seen so far."""
    m = _MULTIPLIER_RE.search(run)
    if m:
        return m.group(1), 20.0 * float(m.group(1)) * N
    return f"{D_seen / (20.0 * N):.3g}", D_seen


def _one(values: list, column: str, run: str):
    if len(values) != 1:
        raise InputError(f"ladder run {run!r}: {len(values)} different {column} values "
                         f"{values[:3]}")
    return values[0]


def _run_params(obs: Observations, run: str, extra: Mapping[str, str]) -> dict[str, str]:
    size = _one(obs.unique("size"), "size", run)
    N = _one(obs.unique("N"), "N", run)
    multiplier, D = _planned(run, float(N), float(obs.D.max()))
    params = {"size": str(size), "N": repr(float(N)), "planned_D": repr(D),
              "multiplier": multiplier, **_constants(obs)}
    params.update({k: str(v) for k, v in extra.items()})
    return params


def _constants(obs: Observations) -> dict[str, str]:
    """{<task>/n_questions: count} where a task's question count is one number given at every
    checkpoint of the task: a param, not a flat metric chart."""
    out = {}
    for task in obs.unique("task"):
        rows = obs.where(task=task)
        counts = rows.where(metric=COUNT)
        other = {int(s) for s, m in zip(rows.step, rows.metric, strict=True) if m != COUNT}
        if len(counts) and len(counts.unique("value")) == 1 and \
                {int(s) for s in counts.step} == other and len(counts) == len(other):
            out[f"{task}/{COUNT}"] = repr(float(counts.value[0]))
    return out


def log_ladder(
    store: Store,
    obs: Observations,
    ladder: str,
    *,
    tokenizer: str | None = None,
    corpus_hash: str | None = None,
    run_params: Mapping[str, Mapping[str, str]] | None = None,
    curves: Mapping[str, Mapping[int, float]] | None = None,
) -> dict[str, str]:
    """Log every ladder run of `obs` (idempotent); returns {ladder run: MLflow run id}.

    `tokenizer` and `corpus_hash` (what the ladder was trained with) are params of every run;
    when not given they are left out rather than logged as a placeholder, so that a later
    logging with the real values adds them. `curves` gives a run's training loss by step
    (the metric `train/loss`, not an observation). `run_params` adds or overrides params per ladder
    run (e.g. the planned D of a run that is still training and has no "<m>xC" name). A param
    that differs from the one already registered is an InputError.
    """
    if len(obs) == 0:
        raise InputError(f"ladder {ladder!r}: no observations to register")
    runs = [r for r in obs.unique("run")]
    given = {"tokenizer": tokenizer, "corpus_hash": corpus_hash}
    common = {k: v for k, v in given.items() if v is not None}
    per_run = {r: obs.where(run=r) for r in runs}
    params = {r: _run_params(per_run[r], r, {**common, **(run_params or {}).get(r, {})})
              for r in runs}  # validate every run before writing anything
    eid = store.experiment_id(experiment_name(ladder), tags={LADDER_TAG: ladder})
    store.sweep(eid, resumable=True)
    return {r: _log_run(store, eid, ladder, r, per_run[r], params[r], (curves or {}).get(r, {}))
            for r in runs}


def _open_run(store: Store, eid: str, ladder: str, run: str, params: dict[str, str]):
    """Find or create the MLflow run of a ladder run and log its params, under the lock (two
    writers of one ladder run would otherwise both create it, or both insert its params)."""
    from mlflow.entities import Param

    query = f"tags.`{RUN_TAG}` = '{run}'"
    with store.exclusive():
        found = store.call("search_runs", [eid], filter_string=query, max_results=1,
                           order_by=["attributes.start_time ASC"])
        made = None if found else store.create_run(eid, run, {RUN_TAG: run, LADDER_TAG: ladder})
        mlrun = found[0] if found else made
        chosen = store.canonical(f"ladder-run\x1f{eid}\x1f{run}", mlrun.info.run_id)
        if chosen != mlrun.info.run_id:  # another writer of a shared server bound the run first
            if made is not None:
                store.call("delete_run", made.info.run_id)
            mlrun = store.call("get_run", chosen)
        old = mlrun.data.params
        clash = {k: (old[k], v) for k, v in params.items() if k in old and old[k] != v}
        if clash:
            k, (was, now) = next(iter(clash.items()))
            raise InputError(f"ladder run {run!r}: param {k} is {was!r} in the registry, "
                             f"got {now!r}")
        new = [Param(k, v) for k, v in params.items() if k not in old]
        if new:  # a shared server: another writer may insert the same params at this moment
            store.upsert("log_batch", mlrun.info.run_id, params=new)
    return mlrun


def _log_run(store: Store, eid: str, ladder: str, run: str, obs: Observations,
             params: dict[str, str], curve: Mapping[int, float]) -> str:
    mlrun = _open_run(store, eid, ladder, run, params)
    run_id = mlrun.info.run_id
    rows_hash = obs.content_hash()
    if curve:  # a new training curve changes what is logged, whatever the rows
        rows_hash += f"+{len(curve)}"
    if mlrun.data.tags.get(ROWS_TAG) == rows_hash:  # these exact rows were logged already
        return run_id
    with store.writing(run_id, resumable=True):  # interrupted: FAILED until a rerun ends it
        _log_rows(store, mlrun, obs, rows_hash, params, curve)
    return run_id


def _log_rows(store: Store, mlrun, obs: Observations, rows_hash: str,
              params: Mapping[str, str], curve: Mapping[int, float]) -> None:
    from mlflow.entities import Metric, RunTag

    run_id = mlrun.info.run_id
    ts = mlrun.info.start_time
    metrics: dict[tuple, Metric] = {}
    for i in range(len(obs)):
        step = int(obs.step[i])
        key = f"{obs.task[i]}/{obs.metric[i]}"
        if key in params:  # a constant, logged as a param
            continue
        metrics[(key, step)] = Metric(key, float(obs.value[i]), ts, step)
        metrics.setdefault(("D", step), Metric("D", float(obs.D[i]), ts, step))
        metrics.setdefault(("flops", step), Metric("flops", float(obs.flops[i]), ts, step))
    for step, loss in curve.items():
        metrics[(TRAIN_LOSS, int(step))] = Metric(TRAIN_LOSS, float(loss), ts, int(step))
    # A checkpoint's values are fixed once logged: send only the (metric, step) pairs not there.
    for key in {k for k, _ in metrics} & set(mlrun.data.metrics):
        for m in store.call("get_metric_history", run_id, key):
            metrics.pop((key, m.step), None)
    values = list(metrics.values())
    for start in range(0, len(values), _BATCH):
        store.call("log_batch", run_id, metrics=values[start:start + _BATCH])
    # Every writer of a shared run sets this tag. `set_tag` is read-then-insert, so two writers
    # at once collide on the tag's unique key (seen under load); log_batch's tag path retries.
    store.call("log_batch", run_id, tags=[RunTag(ROWS_TAG, rows_hash)])
    store.call("set_terminated", run_id, "FINISHED")


def registered_run_ids(store: Store, ladder: str) -> dict[str, str]:
    """{ladder run: MLflow run id} of a ladder registered in `store` (empty if it is not)."""
    exp = store.call("get_experiment_by_name", experiment_name(ladder))
    if exp is None:
        return {}
    runs = store.call("search_runs", [exp.experiment_id], max_results=10000,
                      filter_string="attributes.status = 'FINISHED'")
    return {r.data.tags[RUN_TAG]: r.info.run_id for r in runs if RUN_TAG in r.data.tags}


def registered_ladder(store: Store, ladder: str) -> Observations:
    """The observations registered for `ladder`, as the law engine's table."""
    exp = store.call("get_experiment_by_name", experiment_name(ladder))
    if exp is None:
        raise InputError(f"ladder {ladder!r}: not registered in {store.uri}")
    records = []
    # Only finished runs: an interrupted logging (FAILED) or one under way holds partial curves.
    for mlrun in store.call("search_runs", [exp.experiment_id], max_results=10000,
                            filter_string="attributes.status = 'FINISHED'"):
        run = mlrun.data.tags.get(RUN_TAG)
        if run is None:
            continue
        p = mlrun.data.params
        run_id = mlrun.info.run_id
        history = {k: {m.step: m.value for m in store.call("get_metric_history", run_id, k)}
                   for k in mlrun.data.metrics}
        D, flops = history.pop("D", {}), history.pop("flops", {})
        history.pop(TRAIN_LOSS, None)  # training's curve, not an evaluation
        for key, value in p.items():  # constants: at every checkpoint of their task
            if key.endswith(f"/{COUNT}"):
                task = key.split("/", 1)[0]
                steps = {s for k, h in history.items() if k.split("/", 1)[0] == task for s in h}
                history[key] = dict.fromkeys(steps, float(value))
        for key, by_step in history.items():
            task, metric = key.split("/", 1)
            for step, value in by_step.items():
                records.append({"run": run, "size": p["size"], "N": float(p["N"]), "D": D[step],
                                "step": step, "flops": flops[step], "task": task,
                                "metric": metric, "value": value})
    return Observations.from_records(records, where=f"ladder {ladder!r} in {store.uri}")
