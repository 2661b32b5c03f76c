"""`taskladder eval`: score a model directory on the `ladder_*` tasks (lm-eval results JSON),
and `taskladder lm-eval`: lm-eval's own CLI with the `ladder-hf` backend registered."""

from __future__ import annotations

import argparse

from taskladder import flags
from taskladder.common.errors import require_extra
from taskladder.common.slurm import LAUNCHERS
from taskladder.harness_ext.preflight import BACKENDS, DEVICES, DTYPES


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model directory on ladder_* tasks (writes lm-eval's results JSON)",
        description="Evaluate Hugging Face model directories on OLMES ranked-classification "
        "tasks; each results JSON gets a top-level 'taskladder' key with the directory's "
        "ladder_meta.json when present. Several directories (a ladder's checkpoints) are "
        "scored into OUTPUT/<run>/step<step>/, spread over --devices local workers or "
        "--launcher slurm jobs; checkpoints already scored there are skipped.",
    )
    p.add_argument("--model-dir", required=True, nargs="+", metavar="DIR",
                   help="Hugging Face model folder(s)")
    flags.add(p, "--tasks", default="ladder_core",
              help="comma-separated task names, tags, wildcards or keys (default ladder_core)")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="documents per task")
    flags.add(p, "--output", default="evals",
              help="folder for results_<time>.json, or a .json file path (default evals)")
    flags.add(p, "--json", help="write {\"results\": path of the results JSON} to PATH "
              "(- = stdout)")
    p.add_argument("--backend", default="ladder-hf", choices=BACKENDS,
                   help="ladder-hf (shared-prefix reuse, default), hf, vllm (lm-eval's vllm "
                   "model) or ladder-vllm (vLLM, each question's context once)")
    p.add_argument("--device", choices=DEVICES, default=None,
                   help="hf backends: cpu or cuda (default: cuda when visible)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weights and activations (default float32; bfloat16 moves bpb/ce slightly)")
    p.add_argument("--batch-size", type=int, default=32, metavar="B",
                   help="batch size of the hf and vllm backends (default 32)")
    flags.add(p, "--devices", type=int, default=1,
              help="local workers, one per GPU (or per share of the CPU cores), checkpoints "
              "dealt among them (default 1)")
    flags.add(p, "--launcher", default="local", choices=LAUNCHERS,
              help="local (default) or slurm: a job array over checkpoint shards, cancelled or "
              "failed jobs resubmitted")
    flags.add(p, "--shards", type=int, default=None,
              help="slurm: jobs the checkpoints are split into (default one per checkpoint)")
    flags.add(p, "--slurm", help="slurm: what each job asks for, by the spec's names: "
              "partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min (default 1440), "
              "max_retries (3), poll_seconds (10); e.g. partition=gpu,gpus_per_node=1")
    p.set_defaults(func=_eval)

    lm = subparsers.add_parser(
        "lm-eval",
        help="lm-eval's CLI with the ladder-hf backend registered (arguments passed through)",
        add_help=False,
        prefix_chars="\0",  # no options of its own: every argument goes to lm-eval
    )
    lm.add_argument("lm_eval_args", nargs=argparse.REMAINDER)
    lm.set_defaults(func=_lm_eval)


def _eval(args: argparse.Namespace) -> int:
    require_extra("eval", "taskladder eval", "lm_eval", "torch")
    from taskladder.harness_ext.runner import evaluate

    if len(args.model_dir) == 1 and args.devices == 1 and args.launcher == "local" \
            and args.shards is None and args.slurm is None:
        path = evaluate(args.model_dir[0], args.tasks, limit=args.limit, output=args.output,
                        backend=args.backend, batch_size=args.batch_size, device=args.device,
                        dtype=args.dtype)
        print(path, file=flags.table_stream(args.json))
        flags.write_json_result(args.json, {"results": str(path)})
        return 0
    return _eval_many(args)


def _eval_many(args: argparse.Namespace) -> int:
    """Several checkpoints (or workers): one results file each under OUTPUT/<run>/step<step>."""
    from pathlib import Path

    from taskladder.common.errors import InputError
    from taskladder.config import EvalSlurm
    from taskladder.harness_ext.shards import SlurmResources, evaluate_sharded

    if args.output.endswith(".json"):
        raise InputError(f"output: {args.output!r} is a file; several checkpoints or workers "
                         "write into a folder")
    if args.slurm is not None and args.launcher != "slurm":
        raise InputError(f"--slurm: {args.slurm!r} applies to --launcher slurm")
    slurm = SlurmResources(**flags.over_section(EvalSlurm(), args.slurm, "--slurm").model_dump())
    out = flags.table_stream(args.json)
    paths = evaluate_sharded([Path(d) for d in args.model_dir], args.tasks, args.limit,
                             Path(args.output), args.backend,
                             lambda line: print(line, file=out, flush=True), args.batch_size,
                             args.device, args.dtype, args.devices, args.launcher, args.shards,
                             slurm)
    print("\n".join(map(str, paths)), file=out)
    flags.write_json_result(args.json, {"results": [str(p) for p in paths]})
    return 0


def _lm_eval(args: argparse.Namespace) -> int:
    require_extra("eval", "taskladder lm-eval", "lm_eval", "torch")
    import sys

    from lm_eval.__main__ import cli_evaluate

    import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf)

    sys.argv = ["lm_eval", *args.lm_eval_args]
    cli_evaluate()
    return 0
