"""`taskladder run [SPEC]`: from nothing to a checked prediction (see taskladder.pipeline)."""

from __future__ import annotations

import argparse


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="train, evaluate, fit, predict, register and gate, as a pipeline spec says",
        description="Run a pipeline spec end to end; re-running skips finished work. "
        "SPEC is a bundled spec name (cpu-micro, paper, paper-import) or a YAML/TOML/JSON "
        "file; without SPEC the embedded cpu-micro default runs.",
    )
    p.add_argument("spec", nargs="?", default=None, help="bundled spec name or spec file")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the spec and print the plan (runs, tokens, steps, GPU hours)")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides the spec)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (overrides the spec)")
    p.add_argument("--ladder-path", metavar="PATH",
                   help="for an imported ladder: where its evaluations are (overrides the spec)")
    p.add_argument("--method", choices=("paper", "default"),
                   help="law method (overrides the spec's fit.method)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="run STAGE even when its outputs verify (repeatable): train, evaluate, "
                   "observe, register, fit+predict, target, gate")
    p.add_argument("--list-specs", action="store_true", help="list the bundled specs and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from taskladder.config import bundled_specs, load_spec
    from taskladder.errors import UsageError

    if args.list_specs:
        for name in bundled_specs():
            print(f"{name:14s} {load_spec(name).description}")
        return 0
    spec = load_spec(args.spec)
    overrides = {"output_dir": _absolute(args.output), "tracking_uri": args.tracking_uri}
    if args.ladder_path:
        ladder = spec.ladder.model_dump(by_alias=True)
        overrides["ladder"] = {**ladder, "import": _absolute(args.ladder_path)}
    if args.method:
        overrides["fit"] = {**spec.fit.model_dump(), "method": args.method}
    spec = spec.with_overrides(**overrides)

    from taskladder import stages

    applying = [s.name for s in stages.STAGES if s.applies(spec)]
    for name in args.force:
        if name not in applying:
            raise UsageError(f"--force: unknown stage {name!r} (stages of spec {spec.name}: "
                             f"{', '.join(applying)})")
    stages.preflight(spec, dry_run=args.dry_run)
    if args.dry_run:
        for line in stages.plan_lines(spec):
            print(line)
        return 0
    from taskladder.pipeline import run_pipeline
    from taskladder.verdict import exit_code, final_lines

    ctx, reports = run_pipeline(spec, stages.STAGES, force=tuple(args.force))
    for line in final_lines(ctx, reports):
        print(line)
    return exit_code(ctx)


def _absolute(path: str | None) -> str | None:
    """Paths given on the command line are relative to the working directory."""
    from pathlib import Path

    return None if path is None else str(Path(path).expanduser().resolve())
