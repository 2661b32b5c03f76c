"""`taskladder run [SPEC]`: from nothing to a checked prediction (see taskladder.pipeline)."""

from __future__ import annotations

import argparse

from taskladder import flags


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="train, evaluate, fit, predict, register and gate, as a pipeline spec says",
        description="Run a pipeline spec end to end; re-running skips finished work. "
        "SPEC is a bundled spec name (cpu-micro, paper, paper-import) or a YAML/TOML/JSON "
        "file; without SPEC the embedded cpu-micro default runs.",
    )
    p.add_argument("spec", nargs="?", default=None, help="bundled spec name or spec file")
    flags.add(p, "--dry-run",
              help="validate the spec and print the plan (runs, tokens, steps, GPU hours)")
    flags.add(p, "--output", help="output folder (overrides the spec)")
    flags.add(p, "--tracking-uri", help="MLflow tracking URI (overrides the spec)")
    flags.add(p, "--ladder", help="for an imported ladder: where its evaluations are "
              "(overrides the spec)")
    flags.renamed(p, "--ladder-path", "--ladder")
    p.add_argument("--method", choices=("paper", "default"),
                   help="law method (overrides the spec's fit.method)")
    flags.add(p, "--force", action="append", default=[],
              help="run STAGE even when its outputs verify (repeatable; an unknown STAGE "
              "lists the spec's stages)")
    flags.add(p, "--devices", type=int, help="the evaluate stage's local workers, one per "
              "GPU or share of the CPU cores (overrides evaluate.devices)")
    flags.add(p, "--launcher", choices=("local", "slurm"), help="where the evaluate stage "
              "scores checkpoints: here or as Slurm jobs (overrides evaluate.launcher)")
    flags.add(p, "--shards", type=int, help="slurm: jobs the ladder's checkpoints are split "
              "into (overrides evaluate.shards; default one per checkpoint)")
    flags.add(p, "--slurm", help="slurm: what each evaluation job asks for, over the spec's "
              "evaluate.slurm: partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min, "
              "max_retries, poll_seconds; e.g. partition=gpu,timeout_min=240")
    p.add_argument("--list-specs", action="store_true", help="list the bundled specs and exit")
    flags.add(p, "--json", help="write the run's outcome (stages, verdict, exit code) to PATH "
              "(- = stdout)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from taskladder.common.errors import field_names
    from taskladder.config import bundled_specs, load_spec
    from taskladder.errors import UsageError

    if args.list_specs:
        for name in bundled_specs():
            print(f"{name:14s} {load_spec(name).description}")
        return 0
    spec = load_spec(args.spec)
    overrides = {"output_dir": _absolute(args.output), "tracking_uri": args.tracking_uri}
    if args.ladder:
        ladder = spec.ladder.model_dump(by_alias=True)
        overrides["ladder"] = {**ladder, "import": _absolute(args.ladder)}
    if args.method:
        overrides["fit"] = {**spec.fit.model_dump(), "method": args.method}
    spec = spec.with_overrides(**overrides).with_evaluate(args.devices, args.launcher,
                                                          args.shards, args.slurm)

    from taskladder import stages

    applying = [s.name for s in stages.STAGES if s.applies(spec)]
    for name in args.force:
        if name not in applying:
            raise UsageError(f"--force: unknown stage {name!r} (stages of spec {spec.name}: "
                             f"{', '.join(applying)})")
    flagged = {f"evaluate.{k}": f"--{k}" for k in ("devices", "shards")
               if getattr(args, k) is not None}
    with field_names(flagged):
        stages.preflight(spec)  # --dry-run too: it refuses exactly as the run would
    out = flags.table_stream(args.json)
    if args.dry_run:
        plan = stages.plan_lines(spec)
        print("\n".join(plan), file=out)
        flags.write_json_result(args.json, {"spec": spec.name, "plan": plan})
        return 0
    from taskladder.pipeline import run_pipeline
    from taskladder.verdict import exit_code, final_lines, outcome

    ctx, reports = run_pipeline(spec, stages.STAGES, force=tuple(args.force))
    print("\n".join(final_lines(ctx, reports)), file=out)
    flags.write_json_result(args.json, outcome(ctx, reports))
    return exit_code(ctx)


def _absolute(path: str | None) -> str | None:
    """Paths given on the command line are relative to the working directory."""
    from pathlib import Path

    return None if path is None else str(Path(path).expanduser().resolve())
