"""`taskladder eval`: score a model directory on the `ladder_*` tasks (lm-eval results JSON),
and `taskladder lm-eval`: lm-eval's own CLI with the `ladder-hf` backend registered."""

from __future__ import annotations

import argparse

from taskladder import flags
from taskladder.common.errors import require_extra
from taskladder.harness_ext.preflight import BACKENDS, DEVICES, DTYPES


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model directory on ladder_* tasks (writes lm-eval's results JSON)",
        description="Evaluate a Hugging Face model directory on OLMES ranked-classification "
        "tasks; the results JSON gets a top-level 'taskladder' key with the directory's "
        "ladder_meta.json when present.",
    )
    p.add_argument("--model-dir", required=True, metavar="DIR", help="Hugging Face model folder")
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

    path = evaluate(args.model_dir, args.tasks, limit=args.limit, output=args.output,
                    backend=args.backend, batch_size=args.batch_size, device=args.device,
                    dtype=args.dtype)
    print(path, file=flags.table_stream(args.json))
    flags.write_json_result(args.json, {"results": str(path)})
    return 0


def _lm_eval(args: argparse.Namespace) -> int:
    require_extra("eval", "taskladder lm-eval", "lm_eval", "torch")
    import sys

    from lm_eval.__main__ import cli_evaluate

    import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf)

    sys.argv = ["lm_eval", *args.lm_eval_args]
    cli_evaluate()
    return 0
