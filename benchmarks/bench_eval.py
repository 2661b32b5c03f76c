"""Requests/s of the scoring backends against lm-eval's hf backend, same model, same requests.

    .venv/bin/python benchmarks/bench_eval.py [--tasks ladder_arc_easy_rc,ladder_hellaswag_rc]
        [--limit 200] [--vocab 4096 | --vocab olmo] [--d-model 128 --layers 4 --heads 2]
        [--backends hf,ladder-hf] [--device cpu|cuda] [--dtype float32|bfloat16]
    .venv-vllm/bin/python benchmarks/bench_eval.py --backends hf,ladder-hf,vllm,ladder-vllm
    .venv/bin/python benchmarks/bench_eval.py --many 27 --limit 24   # evaluate_many vs per model

Builds a freshly initialised Olmo2 (weights do not change the cost; `--model DIR` scores a
given one), lets lm-eval build each task's requests once, then times `loglikelihood` of each
backend on the same list (model loading and vLLM's engine start excluded), and checks every
backend against the first one: the largest log-likelihood difference, identical greedy flags,
and identical answers (the argmax option of every question, raw and per character, so the
accuracies are identical). `--many N` instead times the evaluation stage of a ladder: N
checkpoints x the tasks, one `evaluate` (lm-eval's simple_evaluate path) per checkpoint
against one `evaluate_many` call.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _answers(task, lls: list[float]) -> list[tuple[int, int]]:
    """Per question: the argmax option by raw log-likelihood and by per-character one."""
    by_doc: dict[int, list[tuple[int, float, float]]] = {}
    for inst, ll in zip(task.instances, lls, strict=True):
        by_doc.setdefault(inst.doc_id, []).append((inst.idx, ll, ll / max(len(inst.args[1]) - 1, 1)))
    return [(max(opts, key=lambda o: o[1])[0], max(opts, key=lambda o: o[2])[0])
            for _, opts in sorted(by_doc.items())]


def _lm(backend: str, model_dir: Path, args):
    from lm_eval.api.registry import get_model

    import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf, ladder-vllm)
    from taskladder.harness_ext.runner import model_args

    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    return get_model(backend).create_from_arg_obj(
        model_args(backend, model_dir, device, args.dtype, args.batch_size), {})


def bench_backends(args, model_dir: Path) -> None:
    from taskladder.harness_ext.runner import task_manager

    backends = args.backends.split(",")
    tasks = task_manager().load(args.tasks.split(","))["tasks"]
    for task in tasks.values():
        task.build_all_requests(limit=args.limit)
    rows = []
    answers: dict[str, dict[str, list]] = {}
    for backend in backends:
        lm = _lm(backend, model_dir, args)
        answers[backend] = {}
        for name, task in tasks.items():
            reqs = task.instances
            lm.loglikelihood(reqs[:8], disable_tqdm=True)  # warm-up (first-call allocations)
            start, cpu = time.perf_counter(), time.process_time()
            answers[backend][name] = lm.loglikelihood(reqs, disable_tqdm=True)
            rows.append((name, backend, len(reqs), time.perf_counter() - start,
                         time.process_time() - cpu))
        del lm
    ref = backends[0]
    print(f"{'task':20s} {'backend':11s} {'requests':>8s} {'s':>7s} {'req/s':>7s} "
          f"{'vs ' + ref:>7s} {'cpu s':>7s} {'cpu vs':>6s} {'max|dll|':>8s} {'greedy':>6s} "
          f"{'answers':>7s}")
    base = {name: (sec, cpu) for name, b, _, sec, cpu in rows if b == ref}
    for name, backend, n, sec, cpu in rows:
        got, want = answers[backend][name], answers[ref][name]
        diff = max(abs(a[0] - b[0]) for a, b in zip(got, want, strict=True))
        greedy = all(a[1] == b[1] for a, b in zip(got, want, strict=True))
        same = _answers(tasks[name], [a[0] for a in got]) == _answers(
            tasks[name], [b[0] for b in want])
        print(f"{name:20s} {backend:11s} {n:8d} {sec:7.2f} {n / sec:7.1f} "
              f"{base[name][0] / sec:6.1f}x {cpu:7.2f} {base[name][1] / cpu:5.1f}x {diff:8.1e} "
              f"{greedy!s:>6s} {same!s:>7s}")
    print("cpu s: this process's CPU time (all threads); on a shared machine its ratio is the "
          "steadier one; vLLM's CPU time is not comparable (its engine threads busy-wait)")


def bench_many(args, model_dir: Path, root: Path) -> None:
    import json
    import shutil

    from taskladder.harness_ext.runner import evaluate, evaluate_many

    for i in range(args.many):
        d = root / f"ckpt{i}"
        shutil.copytree(model_dir, d)
        meta = {"run": f"tiny-{i // 3}xC", "size": "tiny", "N": 1e5, "D": 1e6 * (i + 1),
                "step": 10 * (i % 3 + 1), "flops": 6e11 * (i + 1)}
        (d / "ladder_meta.json").write_text(json.dumps(meta))
    tasks = args.tasks.split(",")
    start = time.perf_counter()
    for d in sorted(root.glob("ckpt*")):
        evaluate(d, tasks, args.limit, root / "one" / d.name, backend=args.backends.split(",")[0])
    one = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_many(sorted(root.glob("ckpt*")), tasks, args.limit, root / "many",
                  backend=args.backends.split(",")[0], echo=lambda line: None)
    many = time.perf_counter() - start
    print(f"{args.many} checkpoints x {len(tasks)} tasks x {args.limit} questions")
    print(f"evaluate per checkpoint {one:8.1f} s")
    print(f"evaluate_many           {many:8.1f} s   speed-up {one / many:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="ladder_arc_easy_rc,ladder_hellaswag_rc")
    ap.add_argument("--limit", type=int, default=200, help="questions per task")
    ap.add_argument("--vocab", default="4096", help="BPE vocabulary size, or 'olmo' (50k)")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 d)")
    ap.add_argument("--model", type=Path, default=None, help="score this model folder instead")
    ap.add_argument("--backends", default="hf,ladder-hf", help="the first is the reference")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--batch-size", type=int, default=32, help="of the hf and vllm backends")
    ap.add_argument("--many", type=int, default=0, help="time evaluate_many on N checkpoints")
    args = ap.parse_args()

    import torch
    from tiny_model import make_tiny_olmo2

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load "
          f"{os.getloadavg()[0]:.1f}; CUDA: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or make_tiny_olmo2(
            Path(tmp) / "model", vocab_size=None if args.vocab == "olmo" else int(args.vocab),
            d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
            intermediate=args.intermediate)
        what = (str(model_dir) if args.model else
                f"Olmo2 d{args.d_model} L{args.layers} heads {args.heads}, vocab {args.vocab}")
        print(f"model: {what}; {args.dtype}; {args.limit} questions")
        if args.many:
            bench_many(args, model_dir, Path(tmp))
        else:
            bench_backends(args, model_dir)


if __name__ == "__main__":
    main()
