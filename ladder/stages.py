"""The stages of `taskladder run` and the plan `--dry-run` prints.

Each stage calls one area through its public API (training, harness_ext, laws, registry) and
keeps its output on disk under the run's folder:

  ladder/               training output: runs, checkpoints, HF exports (with ladder_meta.json);
                        the target trains here too (same tokenizer and data)
  evals/<key>/<run>/<step>/  lm-eval results JSON per checkpoint (skipped when present);
                        <key> names the eval settings (tasks, limit), so changing them re-scores
  target-eval/<key>/    the target's final checkpoint, scored the same way
  observations.csv      the tidy table every later stage reads
  fits.json, plots/     fitted laws and their plots
  predictions.json      the target's predicted accuracy per task, with intervals and law versions
  gate.json             the drift gate's verdict
  state.json, timings.json   what finished on which input; seconds per stage
"""

from __future__ import annotations

import json
from pathlib import Path

from taskladder.common.meta import META_FILE
from taskladder.config import PipelineSpec
from taskladder.errors import UsageError
from taskladder.pipeline import RunContext, Stage, StageReport, digest, write_json


# training -----------------------------------------------------------------------------------
def ladder_spec(spec: PipelineSpec):
    """The training area's spec for the ladder, writing under the run's folder."""
    from taskladder.training.spec import load_ladder_spec

    overrides = {**spec.ladder.overrides, "output_dir": str(spec.out_dir() / "ladder")}
    return load_ladder_spec(spec.ladder.train, overrides)


def target_spec(spec: PipelineSpec):
    """The target's training spec; `ladder` = the ladder spec's own target (same data folder)."""
    if spec.target.spec == "ladder":
        return ladder_spec(spec).target_spec()
    from taskladder.training.spec import load_ladder_spec

    return load_ladder_spec(spec.target.spec, {"output_dir": str(spec.out_dir() / "ladder")})


def _train(ctx: RunContext, training_spec) -> list[Path]:
    """Train (finished runs are reused, killed ones resume); the exported checkpoint dirs."""
    from taskladder.training.ladder import train_ladder

    results = train_ladder(training_spec, log=ctx.echo)
    return [Path(c.hf_dir) for r in results for c in r.checkpoints]


def _meta(model_dir: Path) -> dict:
    return json.loads((model_dir / META_FILE).read_text())


def train_ladder(ctx: RunContext) -> str:
    exports = _train(ctx, ladder_spec(ctx.spec))
    ctx.values["checkpoints"] = exports
    runs = {_meta(d)["run"] for d in exports}
    return f"{len(runs)} runs, {len(exports)} exported checkpoints"


# evaluation ---------------------------------------------------------------------------------
def _eval_one(spec: PipelineSpec, model_dir: Path, dest: Path) -> bool:
    """Score one checkpoint unless its results are on disk; True when it ran."""
    if any(dest.glob("results_*.json")):
        return False
    from taskladder.harness_ext.runner import evaluate

    evaluate(model_dir, tasks=spec.eval.tasks, limit=spec.eval.limit, output=dest,
             backend=spec.eval.backend, batch_size=spec.eval.batch_size)
    return True


def _evals_dir(ctx: RunContext, kind: str) -> Path:
    """Results of one eval setting: the backend is left out (backends give identical metrics)."""
    settings = {"tasks": ctx.spec.eval.tasks, "limit": ctx.spec.eval.limit}
    folder = ctx.out / kind / digest(settings)[:10]
    if not (folder / "eval.json").is_file():
        write_json(folder / "eval.json", settings)
    return folder


def evaluate_ladder(ctx: RunContext) -> str:
    exports = ctx.values["checkpoints"]
    ran = 0
    for i, model_dir in enumerate(exports, 1):
        meta = _meta(model_dir)
        dest = _evals_dir(ctx, "evals") / meta["run"] / f"step{int(meta['step']):07d}"
        if _eval_one(ctx.spec, model_dir, dest):
            ran += 1
            ctx.echo(f"   [{i}/{len(exports)}] evaluated {meta['run']} step {meta['step']}")
    return f"{ran} checkpoints evaluated, {len(exports) - ran} already done"


# observations -------------------------------------------------------------------------------
def observe(ctx: RunContext) -> str:
    """Read the ladder into the one observation table (and keep it as observations.csv)."""
    from taskladder.laws.readers import read_ladder, select_runs

    spec = ctx.spec
    if spec.ladder.trained:
        obs = read_ladder(_evals_dir(ctx, "evals"), "lm-eval")
    else:
        obs = read_ladder(spec.resolve_path(spec.ladder.import_), spec.ladder.format)
        if spec.ladder.runs:
            obs = select_runs(obs, spec.ladder.runs, where="ladder.runs")
    obs.to_csv(ctx.out / "observations.csv")
    ctx.values["observations"] = obs
    ctx.values["obs_hash"] = obs.content_hash()
    return f"{len(obs)} observations from {len(obs.unique('run'))} runs"


def register_ladder(ctx: RunContext) -> str:
    key = digest(ctx.values["obs_hash"], ctx.tracking_uri)
    if ctx.finished("register", key):
        return "ladder already registered"
    from taskladder.registry.ladder_runs import log_ladder

    runs = log_ladder(_store(ctx), ctx.values["observations"], ctx.spec.name)
    ctx.mark("register", key)
    return f"{len(runs)} ladder runs logged to {ctx.tracking_uri}"


def _store(ctx: RunContext):
    if "store" not in ctx.values:
        from taskladder.registry.store import open_store

        ctx.values["store"] = open_store(ctx.tracking_uri)
    return ctx.values["store"]


# laws ---------------------------------------------------------------------------------------
def fit_and_predict(ctx: RunContext) -> str:
    """Fit the chained law per task, predict the target, plot, register laws and prediction.

    Skipped when the observations, the fit settings and the target are unchanged. When the
    target's real evaluation is already known (an imported target), the report and the plots
    carry it too.
    """
    spec, target = ctx.spec, _target_size(ctx.spec)
    obs = ctx.values["observations"]
    key = digest(ctx.values["obs_hash"], spec.fit.model_dump(), spec.fit_tasks, target,
                 ctx.tracking_uri)
    pred_path = ctx.out / "predictions.json"
    if ctx.finished("fit", key) and pred_path.is_file():
        ctx.values["predictions"] = json.loads(pred_path.read_text())
        return "laws and prediction unchanged"
    from taskladder.laws.chained import ChainedFitter
    from taskladder.laws.plots import write_plots
    from taskladder.laws.report import build_report, fits_document

    fitter = ChainedFitter(spec.fit.method)
    fits = {task: fitter.fit(obs, task) for task in spec.fit_tasks}
    ladder = {"source": str(_ladder_source(ctx)), "format": spec.ladder.format or "lm-eval",
              "runs": obs.unique("run"), "data_hash": ctx.values["obs_hash"]}
    actual = None
    if spec.target.actual is not None:
        from taskladder.laws.readers import read_ladder

        actual = read_ladder(*_actual_path(ctx))
    report = build_report(fits, target, ladder, actual)
    write_json(ctx.out / "fits.json", fits_document(fits, ladder))
    plots = write_plots(ctx.out / "plots", fits, obs, target, report)

    from taskladder.registry.laws import register_fit
    from taskladder.registry.predictions import register_prediction

    store = _store(ctx)
    versions = register_fit(fits, store=store, observations=obs, ladder=spec.name, plots=plots)
    register_prediction({t: e["predicted"] for t, e in report["tasks"].items()}, target=target,
                        versions=versions, store=store)
    report["laws"] = {t: v.uri for t, v in versions.items()}
    report["plots"] = [str(p) for p in plots]
    write_json(pred_path, report)
    ctx.values["predictions"] = report
    ctx.mark("fit", key)
    created = sum(v.created for v in versions.values())
    return (f"{len(fits)} laws fitted ({spec.fit.method}; {created} new versions), "
            f"{target['name']} predicted, {len(plots)} plots")


def _ladder_source(ctx: RunContext) -> Path:
    if ctx.spec.ladder.trained:
        return _evals_dir(ctx, "evals")
    return ctx.spec.resolve_path(ctx.spec.ladder.import_)


def _target_size(spec: PipelineSpec) -> dict:
    if spec.target.spec is not None:
        final = target_spec(spec).plan()[-1]
        return {"name": spec.target.name, "N": float(final.N), "D": float(final.tokens)}
    return {"name": spec.target.name, "N": spec.target.N, "D": spec.target.D}


# the target and the gate --------------------------------------------------------------------
def train_target(ctx: RunContext) -> str:
    final = _train(ctx, target_spec(ctx.spec))[-1]
    ran = _eval_one(ctx.spec, final, _evals_dir(ctx, "target-eval"))
    return f"target trained; final checkpoint {'evaluated' if ran else 'already evaluated'}"


def _actual_path(ctx: RunContext) -> tuple[Path, str]:
    spec = ctx.spec
    if spec.target.train:
        return _evals_dir(ctx, "target-eval"), "lm-eval"
    return spec.resolve_path(spec.target.actual), spec.target.actual_format


def gate(ctx: RunContext) -> str:
    """Record the target's real evaluation, compare it with the registered prediction."""
    from taskladder.registry.gate import check_target, format_table, run_gate

    path, fmt = _actual_path(ctx)
    name = ctx.spec.target.name
    check_target(path, fmt, target=name, tasks=ctx.spec.fit_tasks, store=_store(ctx))
    verdict = run_gate(name, tolerance=ctx.spec.gate.tolerance, store=_store(ctx))
    write_json(ctx.out / "gate.json", verdict)
    ctx.values["gate"] = verdict
    ctx.values["gate_table"] = format_table(verdict)
    bad = [r["task"] for r in verdict["rows"] if r["status"] != "ok"]
    return "PASS: every task within tolerance" if verdict["passed"] else f"DRIFT: {', '.join(bad)}"


STAGES = [
    Stage("train", train_ladder, lambda s: s.ladder.trained),
    Stage("evaluate", evaluate_ladder, lambda s: s.ladder.trained),
    Stage("observe", observe),
    Stage("register", register_ladder),
    Stage("fit+predict", fit_and_predict),
    Stage("target", train_target, lambda s: s.target.train),
    Stage("gate", gate, lambda s: s.gate.enabled),
]


# before any work: validate, then plan ----------------------------------------------------------
def preflight(spec: PipelineSpec, dry_run: bool = False) -> None:
    """Everything that can be checked before compute: training specs build, paths exist, and
    (unless only planning) the corpus and tokenizer that training will read are there."""
    if spec.ladder.trained:
        lspec = ladder_spec(spec)
        if not dry_run:
            from taskladder.training.ladder import check_ready

            check_ready(lspec)
    else:
        path = spec.resolve_path(spec.ladder.import_)
        if not path.exists():
            raise UsageError(f"ladder.import: {path} does not exist (give --ladder-path DIR)")
    if spec.target.spec is not None:
        target_spec(spec)
    if spec.target.actual is not None and not spec.resolve_path(spec.target.actual).exists():
        raise UsageError(f"target.actual: {spec.resolve_path(spec.target.actual)} does not exist")


def plan_lines(spec: PipelineSpec) -> list[str]:
    """What `--dry-run` prints: every stage's inputs, and the training plans run by run."""
    lines = [f"spec {spec.name}: {spec.description}", f"output    {spec.out_dir()}",
             f"tracking  {spec.tracking()}"]
    if spec.ladder.trained:
        lines += ["", ladder_spec(spec).describe_plan(), ""]
        e = spec.eval
        lines.append(f"eval      {', '.join(f'ladder_{t}_rc' for t in e.tasks)} on every kept "
                     f"checkpoint, limit {e.limit or 'all'} docs, backend {e.backend}")
    else:
        lines.append(f"ladder    import {spec.resolve_path(spec.ladder.import_)} "
                     f"(format {spec.ladder.format or 'detected'}; runs "
                     f"{', '.join(spec.ladder.runs) if spec.ladder.runs else 'all'})")
    lines.append(f"fit       {spec.fit.method} method; tasks {', '.join(spec.fit_tasks)}")
    t = _target_size(spec)
    lines.append(f"target    {t['name']}: N = {t['N']:,.0f}, D = {t['D']:,.0f}")
    if spec.target.train:
        lines += ["", target_spec(spec).describe_plan(), ""]
    elif spec.target.actual:
        lines.append(f"actual    {spec.resolve_path(spec.target.actual)}")
    if spec.gate.enabled:
        tol = spec.gate.tolerance
        lines.append(f"gate      tolerance {tol if tol == 'interval' else f'{tol} points'}")
    return lines


# the closing report --------------------------------------------------------------------------
def final_lines(ctx: RunContext, reports: list[StageReport]) -> list[str]:
    """The closing report: prediction table, gate verdict, plots, timings, how to browse."""
    from taskladder.laws.report import format_prediction_table

    pred = ctx.values["predictions"]
    lines = ["", format_prediction_table(pred)]
    lines += [f"  law of {task}: {uri}" for task, uri in pred["laws"].items()]
    if "gate" in ctx.values:
        lines += ["", f"Drift gate for {ctx.spec.target.name} (tolerance "
                  f"{ctx.spec.gate.tolerance}):", ctx.values["gate_table"]]
    lines.append("")
    lines.append(f"Plots: {ctx.out / 'plots'}")
    lines += [f"  {p}" for p in pred["plots"]]
    lines.append("Stage times: " + ", ".join(f"{r.name} {r.seconds:.1f} s" for r in reports))
    lines.append(f"Results: {ctx.out}")
    lines.append(f"Browse them: mlflow ui --backend-store-uri {ctx.tracking_uri}")
    return lines


def exit_code(ctx: RunContext) -> int:
    """0, or 1 when the spec's gate found drift (so a CI job can run the pipeline directly)."""
    verdict = ctx.values.get("gate")
    return 1 if verdict is not None and not verdict["passed"] else 0
