"""The stages of `taskladder run`, the checks before any work, and the plan `--dry-run` prints.

Each stage calls one area through its public API (training, harness_ext, laws, registry),
declares what it depends on (see taskladder.pipeline) and returns a typed output
(taskladder.outputs). On disk, under the run's folder:

  ladder/<key>/         the ladder's training runs, checkpoints and HF exports
  evals/<key>/          lm-eval results, one folder per checkpoint
  target/<key>/         the target's training run, its final checkpoint's results and
                        their observations.csv (what the gate and the verdict read)
  observations.csv      the tidy table the fit reads
  fits.json, predictions.json, plots/   fitted laws, the prediction report, its figures
  gate.json             the drift gate's verdict
  state.json            per stage: the inputs it finished on and its output (the one record)
  timings.json          seconds per stage, ran or skipped, and why

<key> names the stage's inputs (spec section, upstream outputs, code version), so changing
any of them (the eval backend included) never reuses work done for other inputs.
"""

from __future__ import annotations

from pathlib import Path

from taskladder.common.errors import field_names
from taskladder.common.facts import train_flops
from taskladder.common.io import write_json
from taskladder.common.meta import Checkpoint
from taskladder.config import PipelineSpec
from taskladder.errors import UsageError
from taskladder.outputs import (
    Gated,
    Observed,
    Predicted,
    Registered,
    Scored,
    TargetScored,
    Trained,
    file_sha,
)
from taskladder.pipeline import RunContext, Stage, code_version, digest


# training -----------------------------------------------------------------------------------
def ladder_training(spec: PipelineSpec, folder: Path | None = None):
    """The training area's spec for the ladder (writing under `folder` when given)."""
    from taskladder.training.spec import load_ladder_spec

    overrides = {**spec.ladder.overrides, "output_dir": str(folder or spec.out_dir() / "ladder")}
    return load_ladder_spec(spec.ladder.train, overrides)


def target_training(spec: PipelineSpec, folder: Path | None = None):
    """The target's training spec; `ladder` = the ladder spec's own target (same data)."""
    if spec.target.spec == "ladder":
        return ladder_training(spec, folder).target_ladder()
    from taskladder.training.spec import load_ladder_spec

    out = str(folder or spec.out_dir() / "target")
    return load_ladder_spec(spec.target.spec, {"output_dir": out})


def _train(ctx: RunContext, training_spec, watch=None) -> Trained:
    """Train (finished runs in this folder are reused, killed ones resume); the checkpoints.
    `watch` judges each kept checkpoint while a run trains (the target's live watch)."""
    from taskladder.training.ladder import train_ladder

    results = train_ladder(training_spec, echo=ctx.echo, watch=watch)
    models = tuple(c for r in results for c in r.checkpoints)
    return Trained(str(training_spec.out_dir()), models, *_data_ids(training_spec, models[-1]))


def _data_ids(training_spec, model: Checkpoint) -> tuple[str, str]:
    """(tokenizer, corpus hash) of a trained ladder, for its registry runs: the tokenizer the
    spec names with a hash of the tokenizer.json every export carries; the corpus as the spec
    defines it (kind, files, split, seed)."""
    tok = training_spec.tokenizer
    name = tok.path if tok.kind == "path" else f"{tok.kind}-{tok.vocab_size}"
    corpus = training_spec.corpus.model_dump(mode="json")
    return (f"{name}@{file_sha(Path(model.hf_dir) / 'tokenizer.json')}",
            digest({"corpus": corpus, "seed": training_spec.seed}))


def train_inputs(ctx: RunContext) -> dict:
    spec = ladder_training(ctx.spec)
    return {"ladder": spec.model_dump(mode="json", exclude={"output_dir"}),
            "code": code_version("training")}


def train_ladder(ctx: RunContext, folder: Path) -> Trained:
    return _train(ctx, ladder_training(ctx.spec, folder))


# evaluation ---------------------------------------------------------------------------------
def _score(ctx: RunContext, models: list[Checkpoint], root: Path) -> list[Path]:
    """One lm-eval results JSON per model under `root`; models already scored are skipped.

    The harness's `evaluate_sharded`: in one process (tasks and requests built once, models
    loaded in turn), or spread over `devices` local workers or Slurm jobs; it prints progress.
    `evaluate.shards` (checked against the ladder's checkpoints before any work) is at most
    one job per checkpoint for the target's.
    """
    from taskladder.harness_ext.shards import SlurmResources, evaluate_sharded

    e = ctx.spec.evaluate
    return evaluate_sharded([Path(m.hf_dir) for m in models], e.tasks, e.limit, root,
                            backend=e.backend, echo=ctx.echo,
                            batch_size=e.batch_size, devices=e.devices, launcher=e.launcher,
                            shards=min(e.shards, len(models)) if e.shards and
                            e.launcher == "slurm" else None,  # the target: one checkpoint
                            slurm=SlurmResources(**e.slurm.model_dump()))


def fast_backend(backend: str) -> str:
    """`fast` is ladder-vllm on a GPU machine where vLLM is installed, else ladder-hf."""
    from taskladder.harness_ext.preflight import pick_fast

    return pick_fast() if backend == "fast" else backend


def _eval_settings(spec: PipelineSpec) -> dict:
    """What changes the scores: tasks, documents and backend (not the batch size, nor where the
    work runs); `fast` picking vLLM on a GPU machine is another backend, and on Slurm nodes,
    which pick it themselves, another key again."""
    e = spec.evaluate
    if e.backend == "fast" and e.launcher == "slurm":
        picked = {"engine": "picked on each Slurm node"}
    elif e.backend == "fast" and fast_backend(e.backend) == "ladder-vllm":
        picked = {"engine": "ladder-vllm"}
    else:
        picked = {}
    return {"tasks": e.tasks, "limit": e.limit, "backend": e.backend, **picked}


def eval_inputs(ctx: RunContext) -> dict:
    trained = ctx.output(Trained)
    return {"evaluate": _eval_settings(ctx.spec), "models": [m.hf_dir for m in trained.models],
            "code": code_version("harness_ext", "tasks")}


def evaluate_ladder(ctx: RunContext, folder: Path) -> Scored:
    models = list(ctx.output(Trained).models)
    return Scored(str(folder), tuple(str(p) for p in _score(ctx, models, folder)))


# observations -------------------------------------------------------------------------------
def _import_fingerprint(path: Path) -> list:
    """Names, sizes and times of an imported ladder's files: a changed file re-reads it."""
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def observe_inputs(ctx: RunContext) -> dict:
    spec = ctx.spec
    if spec.ladder.trained:
        source = list(ctx.output(Scored).results)
    else:
        source = _import_fingerprint(spec.resolve_path(spec.ladder.import_))
    return {"ladder": spec.ladder.model_dump(mode="json", by_alias=True), "source": source,
            "code": code_version("laws")}


def observe(ctx: RunContext, folder: Path) -> Observed:
    """Read the ladder into the one observation table (kept as observations.csv)."""
    from taskladder.laws.readers import read_ladder, select_runs

    spec = ctx.spec
    if spec.ladder.trained:
        obs = read_ladder(ctx.output(Scored).folder, "lm-eval")
    else:
        obs = read_ladder(spec.resolve_path(spec.ladder.import_), spec.ladder.format)
        if spec.ladder.runs:
            with field_names({"runs": "ladder.runs"}):
                obs = select_runs(obs, spec.ladder.runs)
    table = ctx.out / "observations.csv"
    obs.to_csv(table)
    return Observed(str(table), obs.content_hash(), file_sha(table), len(obs.unique("run")),
                    len(obs), obs)


def _data_identity(ctx: RunContext) -> dict:
    """The tokenizer and corpus the ladder was trained on ("unknown" for an import)."""
    trained = ctx.found(Trained)
    if trained is not None:
        return {"tokenizer": trained.tokenizer, "corpus_hash": trained.corpus_hash}
    return {"tokenizer": "unknown", "corpus_hash": "unknown"}


def register_inputs(ctx: RunContext) -> dict:
    return {"observations": ctx.output(Observed).data_hash, "ladder": ctx.spec.name,
            "tracking_uri": ctx.tracking_uri, **_data_identity(ctx),
            "code": code_version("registry")}


def register_ladder(ctx: RunContext, folder: Path) -> Registered:
    from taskladder.common.meta import exported_losses
    from taskladder.registry.ladder_runs import log_ladder

    obs = ctx.output(Observed).observations()
    trained = ctx.outputs.get("train")
    curves = {m.meta.run: exported_losses(m.hf_dir)
              for m in (trained.models if isinstance(trained, Trained) else ())}
    return Registered(log_ladder(ctx.store, obs, ctx.spec.name, **_data_identity(ctx),
                                 curves=curves))


# laws ---------------------------------------------------------------------------------------
def target_size(spec: PipelineSpec) -> dict:
    if spec.target.spec is not None:
        final = target_training(spec).plan()[-1]
        n, d = float(final.N), float(final.tokens)
    else:
        n, d = spec.target.N, spec.target.D
    return {"name": spec.target_name, "N": n, "D": d, "flops": train_flops(n, d)}


def fit_inputs(ctx: RunContext) -> dict:
    spec = ctx.spec
    actual = spec.target.actual and _import_fingerprint(spec.resolve_path(spec.target.actual))
    return {"observations": ctx.output(Observed).data_hash,
            "fit": spec.fit.model_dump(mode="json"), "tasks": spec.fit_tasks,
            "target": target_size(spec), "actual": actual, "tracking_uri": ctx.tracking_uri,
            "code": code_version("laws", "registry")}


def predict_target(ctx: RunContext, folder: Path) -> Predicted:
    """Fit the chained law per task, predict the target, plot, register laws and prediction.

    The target's real evaluation is carried in the report when it is known before the fit (an
    imported target); a trained target is trained after the prediction is registered.
    """
    from taskladder.laws.readers import read_ladder
    from taskladder.laws.report import fits_document
    from taskladder.predict import fit_and_predict, law_inputs

    spec, observed = ctx.spec, ctx.output(Observed)
    source = ctx.output(Scored).folder if spec.ladder.trained else \
        spec.resolve_path(spec.ladder.import_)
    with field_names({"tasks": "fit.tasks"}):
        obs = observed.observations()
        inputs = law_inputs(obs, source, spec.ladder.format or "lm-eval", spec.tasks_in(obs),
                            spec.fit.method)
    actual = None
    if spec.target.actual is not None:
        actual = read_ladder(spec.resolve_path(spec.target.actual), spec.target.actual_format)
    out = fit_and_predict(inputs, target_size(spec), actual, plots_dir=ctx.out / "plots",
                      store=ctx.store, ladder_name=spec.name)
    fits = write_json(ctx.out / "fits.json", fits_document(out.fits, inputs.ladder))
    report = write_json(ctx.out / "predictions.json", out.document)
    return Predicted(str(report), str(fits), out.laws,
                     {t: p.run_id for t, p in out.predictions.items()},
                     tuple(str(p) for p in out.plots))


# the target and the gate --------------------------------------------------------------------
def target_inputs(ctx: RunContext) -> dict:
    spec, g = target_training(ctx.spec), ctx.spec.gate
    watch = g.model_dump(mode="json") if g.watch else None
    return {"target": spec.model_dump(mode="json", exclude={"output_dir"}),
            "evaluate": _eval_settings(ctx.spec), "watch": watch,
            "code": code_version("training", "harness_ext", "tasks",
                                 *(("laws", "registry") if watch else ()))}


def train_target(ctx: RunContext, folder: Path) -> TargetScored:
    """Train and score the target; its results become an observation table, as the ladder's.
    With `gate.watch` every kept checkpoint is scored and judged against its trajectory band
    while it trains (taskladder/live_watch.py)."""
    from taskladder.laws.readers import read_ladder
    from taskladder.live_watch import watching

    live = _live_watch(ctx, folder) if ctx.spec.gate.watch else None
    with watching(live, ctx.out / "plots" / "watch.png"):
        final = _train(ctx, target_training(ctx.spec, folder), live).models[-1]
    result = _score(ctx, [final], folder / "eval")[0]
    table = folder / "observations.csv"
    read_ladder(result, "lm-eval").to_csv(table)
    return TargetScored(final, str(result), str(table))


def _live_watch(ctx: RunContext, folder: Path):
    """The target's watch: trajectory laws of the ladder (tasks the ladder can back), the
    fast scorer on each exported checkpoint, MLflow by step, the spec's rule and patience."""
    from taskladder.common.meta import LadderMeta
    from taskladder.laws.readers import read_ladder
    from taskladder.live_watch import LiveWatch, watchable_laws

    obs = ctx.output(Observed).observations()
    laws = watchable_laws(obs, ctx.spec.tasks_in(obs), ctx.echo)

    def score(hf: Path):
        result = _score(ctx, [Checkpoint(str(hf), LadderMeta.read(hf))], folder / "eval")[0]
        return read_ladder(result, "lm-eval")

    if not laws:
        return None
    g = ctx.spec.gate
    rule = g.rule()
    return LiveWatch(laws, score, ctx.spec.target_name, ctx.out, rule.metric, rule.tolerance,
                     g.patience, g.stop_on_drift, ctx.store)


def _actual_source(ctx: RunContext) -> tuple[Path, str | None]:
    spec = ctx.spec
    if spec.target.train:
        return Path(ctx.output(TargetScored).table), "table"
    return spec.resolve_path(spec.target.actual), spec.target.actual_format


def gate_inputs(ctx: RunContext) -> dict:
    path, _ = _actual_source(ctx)
    return {"prediction": ctx.output(Predicted).to_dict(),
            "actual": _import_fingerprint(path), "gate": ctx.spec.gate.model_dump(mode="json"),
            "tracking_uri": ctx.tracking_uri, "code": code_version("registry")}


def gate(ctx: RunContext, folder: Path) -> Gated:
    """Record the target's real evaluation, compare it with the registered prediction."""
    from taskladder.registry.gate import record_evaluation, run_gate

    path, fmt = _actual_source(ctx)
    name = ctx.spec.target_name
    tasks = ctx.spec.tasks_in(ctx.output(Observed).observations())
    recorded = record_evaluation(path, fmt, target=name, tasks=tasks, store=ctx.store)
    verdict = run_gate(name, evaluation=recorded["eval_run"], store=ctx.store,
                       **ctx.spec.gate.rule_values())
    _redraw_measured(ctx, path, fmt)
    path = write_json(ctx.out / "gate.json", verdict)
    return Gated(str(path), bool(verdict["passed"]), recorded["eval_run"])


def _redraw_measured(ctx: RunContext, path: Path, fmt: str | None) -> None:
    """Redraw the plots with the target's measured values, in the output folder and on the
    registered prediction runs and law versions (their files of the same name replaced)."""
    from taskladder.laws.readers import read_ladder
    from taskladder.predict import redraw_with_actual

    predicted = ctx.output(Predicted)
    plots = redraw_with_actual(predicted.fits, predicted.report, ctx.output(Observed)
                               .observations(), read_ladder(path, fmt), ctx.out / "plots")
    store = ctx.store
    runs = list(predicted.predictions.values())
    for uri in predicted.laws.values():
        name, _, version = uri.removeprefix("models:/").partition("/")
        runs.append(store.call("get_model_version", name, version).run_id)
    for run_id in runs:
        for plot in plots:
            store.call("log_artifact", run_id, str(plot), "plots")


def _stage(name, inputs, run, output, applies=lambda s: True, workdir=None) -> Stage:
    return Stage(name, inputs, run, output.from_dict, output.summary, applies, workdir)


STAGES = [
    _stage("train", train_inputs, train_ladder, Trained, lambda s: s.ladder.trained, "ladder"),
    _stage("evaluate", eval_inputs, evaluate_ladder, Scored, lambda s: s.ladder.trained,
           "evals"),
    _stage("observe", observe_inputs, observe, Observed),
    _stage("register", register_inputs, register_ladder, Registered),
    _stage("fit+predict", fit_inputs, predict_target, Predicted),
    _stage("target", target_inputs, train_target, TargetScored, lambda s: s.target.train,
           "target"),
    _stage("gate", gate_inputs, gate, Gated, lambda s: s.gate.enabled),
]


# before any work: validate, then plan ----------------------------------------------------------
def preflight(spec: PipelineSpec) -> None:
    """Everything a run needs, checked before its first step: the output folder and the
    tracking store writable and reachable, training specs build, the target lies beyond the
    ladder, paths exist, the corpus and tokenizer are there, the extras and backends are
    installed. `--dry-run` runs the same checks and refuses as the run would; the training
    plan alone is `taskladder train SPEC --dry-run`, on any machine."""
    from importlib.util import find_spec

    from taskladder.common.errors import require_extra
    from taskladder.common.io import check_writable
    from taskladder.registry.store import check_uri

    check_writable(spec.out_dir(), "output_dir", folder=True)
    check_uri(spec.tracking(), "tracking_uri")
    if spec.ladder.trained:
        require_extra("train", "training a ladder", "olmo_core")
    if spec.evaluate is not None and (spec.ladder.trained or spec.target.train):
        from taskladder.harness_ext.preflight import check_backend

        check_backend(fast_backend(spec.evaluate.backend))
        if spec.evaluate.launcher == "slurm":
            from taskladder.common.slurm import check_slurm

            check_slurm("evaluate.launcher")
        elif spec.evaluate.devices > 1 and find_spec("torch") is not None:
            from taskladder.harness_ext.shards import local_workers

            local_workers(spec.evaluate.devices)  # no more GPUs than are visible
    if spec.ladder.trained:
        from taskladder.training.ladder import check_ready

        lspec = ladder_training(spec)
        _check_beyond_ladder(spec, lspec)
        _check_shards(spec, lspec)
        check_ready(lspec)  # the corpus and tokenizer: files on this machine
    else:
        path = spec.resolve_path(spec.ladder.import_)
        if not path.exists():
            raise UsageError(f"ladder.import: {path} does not exist (give --ladder DIR)")
    if spec.target.spec is not None:
        target_training(spec)
    if spec.target.actual is not None and not spec.resolve_path(spec.target.actual).exists():
        raise UsageError(f"target.actual: {spec.resolve_path(spec.target.actual)} does not exist")


def _check_beyond_ladder(spec: PipelineSpec, lspec) -> None:
    from taskladder.predict import check_extrapolation

    plans = lspec.plan()
    check_extrapolation(target_size(spec), max(float(p.N) for p in plans),
                 max(float(p.tokens) for p in plans))


def _check_shards(spec: PipelineSpec, lspec) -> None:
    """Slurm jobs for the ladder's evaluation: no more than the checkpoints it keeps."""
    from taskladder.common.errors import FieldError

    shards = spec.evaluate.shards
    if spec.evaluate.launcher == "slurm" and shards is not None:
        kept = sum(len(p.checkpoint_steps) for p in lspec.plan())
        if shards > kept:
            raise FieldError("evaluate.shards", f"{shards} is more than the {kept} checkpoints "
                             "the ladder keeps")


def _where(e) -> str:
    if e.launcher == "slurm":
        asks = ", ".join(f"{k} {v}" for k, v in e.slurm.model_dump(exclude_defaults=True)
                         .items())
        return f"{e.shards or 'one per checkpoint'} Slurm jobs ({asks or 'default resources'})"
    return f"{e.devices} local worker{'s' * (e.devices > 1)}"


def plan_lines(spec: PipelineSpec) -> list[str]:
    """What `--dry-run` prints: every stage's inputs, and the training plans run by run."""
    lines = [f"spec {spec.name}: {spec.description}", f"output    {spec.out_dir()}",
             f"tracking  {spec.tracking()}"]
    if spec.ladder.trained:
        lines += ["", ladder_training(spec).describe_plan(), ""]
        e = spec.evaluate
        lines.append(f"evaluate  {', '.join(f'ladder_{t}_rc' for t in e.tasks)} on every kept "
                     f"checkpoint, limit {e.limit or 'all'} docs, backend {e.backend}, "
                     f"{_where(e)}")
    else:
        lines.append(f"ladder    import {spec.resolve_path(spec.ladder.import_)} "
                     f"(format {spec.ladder.format or 'detected'}; runs "
                     f"{', '.join(spec.ladder.runs) if spec.ladder.runs else 'all'})")
    lines.append(f"fit       {spec.fit.method} method; tasks {', '.join(spec.fit_tasks)}")
    t = target_size(spec)
    lines.append(f"target    {t['name']}: N = {t['N']:,.0f}, D = {t['D']:,.0f}")
    if spec.target.train:
        lines += ["", target_training(spec).describe_plan(), ""]
    elif spec.target.actual:
        lines.append(f"actual    {spec.resolve_path(spec.target.actual)}")
    if spec.gate.enabled:
        lines.append(f"gate      {spec.gate.describe()}")
    return lines
