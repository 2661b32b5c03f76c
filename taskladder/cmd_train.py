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
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    flags.add(p, "--json", nargs="?", const="-",
              help="write the results as JSON to PATH (- or no PATH: stdout)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    require_extra("train", "taskladder train", "torch", "olmo_core")
    from taskladder.training.spec import load_ladder_spec

    overrides = {"output_dir": args.output} if args.output else None
    spec = load_ladder_spec(args.spec, overrides)
    if args.target is not None:
        if args.target and (spec.target is None or args.target != spec.target.name):
            have = spec.target.name if spec.target else "none"
            raise InputError(f"--target: {args.target!r} is not the target of spec {spec.name} "
                             f"(its target: {have})")
        spec = spec.target_ladder()
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

    from taskladder.training.ladder import train_ladder

    results = train_ladder(spec, progress=not args.no_progress, runs=args.only)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 reports
        return 0
    out = flags.table_stream(args.json)
    for r in results:
        last = r.checkpoints[-1]
        print(f"{r.run}: {r.steps} steps, {r.tokens:,} tokens, {len(r.checkpoints)} "
              f"checkpoints, val loss {last.val_loss:.3f} -> {last.hf_dir}", file=out)
    flags.write_json_result(args.json, [asdict(r) for r in results], indent=1)
    return 0
