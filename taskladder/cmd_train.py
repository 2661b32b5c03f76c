"""`taskladder train SPEC`: train (or resume) a ladder and export its checkpoints."""

from __future__ import annotations

import argparse
import os

from taskladder import flags
from taskladder.common.errors import InputError, require_extra


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model ladder with olmo-core (resumes killed runs)",
        description="Train every run of a ladder spec, resuming partial runs from their last "
        "checkpoint and skipping finished ones; export each kept checkpoint to Hugging Face "
        "format with ladder_meta.json. Under torchrun the ranks train data-parallel.",
    )
    p.add_argument("spec", nargs="?", default="cpu-micro-ladder",
                   help="preset (cpu-micro-ladder, cpu-micro-target, paper-ladder, "
                   "paper-small-ladder) or a YAML/TOML/JSON file (default: cpu-micro-ladder)")
    flags.add(p, "--output", help="output folder (overrides the spec's output_dir)")
    flags.renamed(p, "--output-dir", "--output")
    flags.add(p, "--dry-run",
              help="print every run (N, tokens, batch, LR, warmup, steps, cost) and stop")
    flags.add(p, "--target", nargs="?", const="", default=None,
              help="train the spec's target instead (NAME, when given, must be its name)")
    p.add_argument("--only", action="append", metavar="RUN",
                   help="train only this run (repeatable), e.g. d32L2-0.05xC")
    flags.add(p, "--launcher", choices=("local", "slurm"), default="local",
              help="local: train here (default); slurm: submit one job per unfinished "
              "run (the spec's `slurm` section) and return")
    flags.add(p, "--slurm", help="slurm: what each run's job asks for, over the spec's "
              "`slurm` section: partition, nodes, gpus_per_node, ranks_per_node, cpus_per_task, "
              "mem_gb, timeout_min, max_retries, poll_seconds; e.g. partition=gpu,nodes=2")
    watch = p.add_argument_group("watch the target while it trains (with --target; "
                                 "docs/trajectory.md)")
    flags.add(watch, "--ladder", help="the ladder whose trajectory laws judge each kept "
              "checkpoint of the target as it is saved")
    flags.add(watch, "--runs", help="runs of --ladder (OLMo CSVs: the paper's by default)")
    flags.add(watch, "--tasks", help="tasks to score and judge (default: the paper's 8 the "
              "ladder has)")
    watch.add_argument("--limit", type=int, default=None, metavar="K",
                       help="documents per task the fast scorer reads (default: all)")
    flags.add(watch, "--metric", default="loss", choices=("acc", "loss"),
              help="judge the task loss (default) or the accuracy")
    flags.add(watch, "--tolerance", default="interval",
              help="outside the band (interval, default), or a distance (5%%, points)")
    flags.add(watch, "--patience", help="drifting checkpoints in a row that drift (default 3)")
    flags.add(watch, "--stop-on-drift")
    flags.add(watch, "--tracking-uri", help="MLflow store of the watch's metrics by step "
              "(default: sqlite:///OUTPUT/mlflow.db)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    flags.add(p, "--json", nargs="?", const="-",
              help="write the results as JSON to PATH (- or no PATH: stdout)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    require_extra("train", "taskladder train", "torch", "olmo_core")
    from taskladder.training.spec import load_ladder_spec

    overrides = {"output_dir": args.output} if args.output else None
    spec = load_ladder_spec(args.spec, overrides)
    target = None
    if args.target is not None:
        if args.target and (spec.target is None or args.target != spec.target.name):
            have = spec.target.name if spec.target else "none"
            raise InputError(f"--target: {args.target!r} is not the target of spec {spec.name} "
                             f"(its target: {have})")
        target, spec = spec.target.name, spec.target_ladder()
    elif args.ladder is not None:
        raise InputError(f"--ladder: {args.ladder!r} watches a target: it needs --target")
    if args.ladder is not None and args.launcher != "local":
        raise InputError(f"--ladder: the live watch runs in the training process; "
                         f"--launcher {args.launcher} trains elsewhere (use local)")
    if args.slurm is not None:
        if args.launcher != "slurm":
            raise InputError(f"--slurm: {args.slurm!r} applies to --launcher slurm")
        spec = spec.model_copy(update={"slurm": flags.over_section(spec.slurm, args.slurm,
                                                                   "--slurm")})
    if args.dry_run:
        print(spec.describe_plan())
        return 0
    if args.launcher == "slurm":
        from taskladder.training.launch import submit

        jobs = submit(spec, runs=args.only)
        print(f"{len(jobs)} jobs submitted; the others are finished or queued "
              f"(logs: {spec.out_dir() / 'slurm'})")
        return 0

    from dataclasses import asdict

    from taskladder.live_watch import watching
    from taskladder.training.ladder import train_ladder

    live = _live_watch(args, spec, target) if args.ladder is not None else None
    with watching(live, spec.out_dir() / "plots" / "watch.png"):
        results = train_ladder(spec, progress=not args.no_progress, runs=args.only, watch=live)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 reports
        return 0
    out = flags.table_stream(args.json)
    for r in results:
        last = r.checkpoints[-1]
        print(f"{r.run}: {r.steps} steps, {r.tokens:,} tokens, {len(r.checkpoints)} "
              f"checkpoints, val loss {last.val_loss:.3f} -> {last.hf_dir}", file=out)
    flags.write_json_result(args.json, [asdict(r) for r in results], indent=1)
    return 0


def _live_watch(args: argparse.Namespace, spec, target: str):
    """The target's watch (as the pipeline's target stage): the ladder's trajectory laws, the
    fast scorer on each exported checkpoint, MLflow by step; every input checked first."""
    from taskladder.common.meta import LadderMeta
    from taskladder.harness_ext.shards import evaluate_sharded
    from taskladder.laws.readers import read_ladder
    from taskladder.laws.tasks import select_tasks
    from taskladder.live_watch import LiveWatch, watchable_laws
    from taskladder.registry.rule import GateRule
    from taskladder.registry.store import check_uri, open_store
    from taskladder.trajectory_gate import DEFAULT_PATIENCE, parse_patience, read_ladder_runs

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(f"--ladder: the live watch scores checkpoints in one process; this job "
                         f"has {os.environ['WORLD_SIZE']} ranks (WORLD_SIZE)")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit: {args.limit} documents per task; expected at least 1")
    rule = GateRule.parse(args.metric, args.tolerance, None)
    patience = parse_patience(args.patience or DEFAULT_PATIENCE)
    out = spec.out_dir()
    uri = args.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    check_uri(uri)
    ladder = read_ladder_runs(args.ladder, args.runs)
    tasks = select_tasks(flags.names(args.tasks), ladder)
    laws = watchable_laws(ladder, tasks, print)
    if not laws:
        raise InputError(f"--ladder: {args.ladder}: no task's trajectory can be fitted on it")

    def score(hf):
        [result] = evaluate_sharded([hf], list(laws), args.limit, out / "watch-eval",
                                    backend="fast", echo=print)
        return read_ladder(result, "lm-eval").where(run=LadderMeta.read(hf).run)

    out.mkdir(parents=True, exist_ok=True)
    return LiveWatch(laws, score, target, out, rule.metric, rule.tolerance, patience,
                     args.stop_on_drift, open_store(uri))
