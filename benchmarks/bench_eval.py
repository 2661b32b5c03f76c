"""Requests/s of the scoring backends against lm-eval's hf backend, same model, same requests.

    .venv/bin/python benchmarks/bench_eval.py [--tasks ladder_arc_easy_rc,ladder_hellaswag_rc]
        [--limit 200] [--vocab 4096 | --vocab olmo] [--d-model 128 --layers 4 --heads 2]
        [--backends hf,ladder-hf,ladder-hf:bfloat16] [--device cpu|cuda] [--dtype float32]
    .venv-vllm/bin/python benchmarks/bench_eval.py --backends hf,ladder-hf,vllm,ladder-vllm
    .venv/bin/python benchmarks/bench_eval.py --many 27 --limit 24   # evaluate_many vs per model
    .venv/bin/python benchmarks/bench_eval.py --many 8 --devices 2   # 1 worker vs 2 (GPUs/CPUs)

Builds a freshly initialised Olmo2 (weights do not change the cost; `--model DIR` scores a
given one), lets lm-eval build each task's requests once, then times `loglikelihood` of each
backend on the same list (model loading and vLLM's engine start excluded), and checks every
backend against the first one: the largest log-likelihood difference, identical greedy flags,
and identical answers (the argmax option of every question, raw and per character, so the
accuracies are identical). `--many N` instead times the evaluation stage of a ladder: N
checkpoints x the tasks, one `evaluate` (lm-eval's simple_evaluate path) per checkpoint
against one `evaluate_many` call; with `--devices K`, the same checkpoints scored by one worker
and by K (one process per GPU, or per share of the CPU cores), requests/s of each, results
checked identical.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

LOG2_E = 1.4426950408889634
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _per_question(task, lls: list[float]) -> list[tuple[int, int, float, float]]:
    """Per question: argmax option by raw and by per-character log-likelihood, whether the raw
    one is gold, and the gold option's bits per byte (leading space excluded)."""
    by_doc: dict[int, list] = {}
    for inst, ll in zip(task.instances, lls, strict=True):
        by_doc.setdefault(inst.doc_id, []).append((inst.idx, ll, inst.args[1][1:], inst.doc))
    out = []
    for _, opts in sorted(by_doc.items()):
        raw = max(opts, key=lambda o: o[1])[0]
        per_char = max(opts, key=lambda o: o[1] / max(len(o[2]), 1))[0]
        gold = int(opts[0][3]["gold"])
        _, ll, text, _ = next(o for o in opts if o[0] == gold)
        bpb = -ll / max(len(text.encode()), 1) * LOG2_E
        out.append((raw, per_char, float(raw == gold), bpb))
    return out


def _lm(backend: str, dtype: str, model_dir: Path, args):
    from lm_eval.api.registry import get_model

    import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf, ladder-vllm)
    from taskladder.harness_ext.runner import model_args

    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    return get_model(backend).create_from_arg_obj(
        model_args(backend, model_dir, device, dtype, args.batch_size), {})


def bench_backends(args, model_dir: Path) -> None:
    from taskladder.harness_ext.runner import task_manager

    backends = [(b.split(":") + [args.dtype])[:2] for b in args.backends.split(",")]
    tasks = task_manager().load(args.tasks.split(","))["tasks"]
    for task in tasks.values():
        task.build_all_requests(limit=args.limit or None)
    # every backend loaded once, then the timings interleaved repeat by repeat, so a swing in
    # the machine's load falls on all backends alike and the ratios are taken pair by pair
    lms = {(f"{b}:{d}" if d != args.dtype else b): _lm(b, d, model_dir, args) for b, d in backends}
    answers: dict[str, dict[str, list]] = {label: {} for label in lms}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for task in tasks.values():
        for lm in lms.values():
            lm.loglikelihood(task.instances[:8], disable_tqdm=True)  # warm-up (allocations)
    for _ in range(args.repeats):
        for name, task in tasks.items():
            for label, lm in lms.items():
                _sync()
                start, cpu = time.perf_counter(), time.process_time()
                answers[label][name] = lm.loglikelihood(task.instances, disable_tqdm=True)
                _sync()
                times.setdefault((name, label), []).append(
                    (time.perf_counter() - start, time.process_time() - cpu))
    rows = [(name, label, len(task.instances),
             statistics.median(wall for wall, _ in times[name, label]))
            for name, task in tasks.items() for label in lms]
    ref = rows[0][1]
    print(f"{'task':20s} {'backend':18s} {'requests':>8s} {'s':>7s} {'s spread':>13s} "
          f"{'req/s':>7s} {'speed':>6s} {'speed spread':>13s} {'cpu':>6s} {'max|dll|':>8s} "
          f"{'greedy':>6s} {'answers':>7s} {'acc':>6s} {'bpb':>7s}")
    for name, label, n, sec in rows:
        walls = [w for w, _ in times[name, label]]
        speeds = [b[0] / m[0] for b, m in zip(times[name, ref], times[name, label], strict=True)]
        cpus = [b[1] / m[1] for b, m in zip(times[name, ref], times[name, label], strict=True)]
        got, want = answers[label][name], answers[ref][name]
        diff = max(abs(a[0] - b[0]) for a, b in zip(got, want, strict=True))
        greedy = all(a[1] == b[1] for a, b in zip(got, want, strict=True))
        mine = _per_question(tasks[name], [a[0] for a in got])
        theirs = _per_question(tasks[name], [b[0] for b in want])
        same = [m[:2] for m in mine] == [t[:2] for t in theirs]
        acc = sum(m[2] for m in mine) / len(mine)
        bpb = sum(m[3] for m in mine) / len(mine)
        print(f"{name:20s} {label:18s} {n:8d} {sec:7.2f} {min(walls):6.2f}-{max(walls):<6.2f} "
              f"{n / sec:7.1f} {statistics.median(speeds):5.1f}x "
              f"{min(speeds):5.1f}-{max(speeds):<5.1f}x  {statistics.median(cpus):5.1f}x "
              f"{diff:8.1e} {greedy!s:>6s} {same!s:>7s} {acc:6.3f} {bpb:7.4f}")
    print(f"{args.repeats} repeats, interleaved. s: median wall seconds (spread: min-max); "
          f"speed: median of the per-repeat wall-time ratios against {ref} (spread: min-max); "
          "cpu: the same ratio of this process's CPU time over all threads (steadier on a "
          "shared machine; not comparable for vLLM, whose engine threads busy-wait); "
          f"max|dll|, greedy, answers (argmax raw and per character per question): against "
          f"{ref}; acc and mean bpb from the log-likelihoods")


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_many(args, model_dir: Path, root: Path) -> None:
    import shutil

    from taskladder.common.echo import quiet
    from taskladder.common.meta import LadderMeta
    from taskladder.harness_ext.runner import evaluate, evaluate_many

    for i in range(args.many):
        d = root / f"ckpt{i}"
        shutil.copytree(model_dir, d)
        LadderMeta(run=f"tiny-{i // 3}xC", size="tiny", N=1e5, D=1e6 * (i + 1),
                   step=10 * (i % 3 + 1), flops=6e11 * (i + 1)).write(d)
    tasks = args.tasks.split(",")
    ckpts = sorted(root.glob("ckpt*"))
    backend = args.backends.split(",")[0]
    if args.devices is not None:
        return bench_devices(args, ckpts, tasks, backend, root)
    timings = {}
    start = time.perf_counter()
    for d in ckpts:  # the evaluation stage before evaluate_many: simple_evaluate per checkpoint
        _simple_evaluate(d, tasks, args.limit, backend)
    timings["lm_eval.simple_evaluate per checkpoint"] = time.perf_counter() - start
    start = time.perf_counter()
    for d in ckpts:
        evaluate(d, tasks, args.limit, root / "one" / d.name, backend=backend)
    timings["taskladder evaluate per checkpoint"] = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_many(ckpts, tasks, args.limit, root / "many", backend=backend, echo=quiet)
    timings["evaluate_many (one call)"] = time.perf_counter() - start
    print(f"{args.many} checkpoints x {len(tasks)} tasks x {args.limit} questions, {backend}")
    base = next(iter(timings.values()))
    for label, sec in timings.items():
        print(f"{label:40s} {sec:8.1f} s   {base / sec:5.1f}x")


def bench_devices(args, ckpts: list[Path], tasks: list[str], backend: str, root: Path) -> None:
    """Requests/s of the ladder's evaluation on one worker and on `args.devices` workers."""
    import json

    from taskladder.harness_ext.runner import resolve_tasks, task_manager
    from taskladder.harness_ext.shards import evaluate_sharded

    manager = task_manager()
    names = resolve_tasks(tasks, [n for n in manager.all_tasks if n.startswith("ladder_")])
    per_ckpt = 0
    for task in manager.load(names)["tasks"].values():
        task.build_all_requests(limit=args.limit or None)
        per_ckpt += len(task.instances)
    requests = per_ckpt * len(ckpts)
    print(f"{len(ckpts)} checkpoints x {len(tasks)} tasks x {args.limit} questions = "
          f"{requests} requests, {backend}, device {args.device or 'default'}")
    results = {}
    for devices in sorted({1, args.devices}):  # a one-GPU machine: the one line
        start = time.perf_counter()
        paths = evaluate_sharded(ckpts, tasks, args.limit, root / f"dev{devices}", backend,
                                 echo=lambda line: None, device=args.device, devices=devices,
                                 batch_size=args.batch_size)
        sec = time.perf_counter() - start
        results[devices] = [json.loads(p.read_text())["results"] for p in paths]
        print(f"{devices} device{'s' * (devices > 1)}: {sec:8.1f} s  {requests / sec:8.1f} "
              f"requests/s")
    if args.devices > 1:
        print(f"results identical: {results[1] == results[args.devices]}")


def _simple_evaluate(model_dir: Path, tasks: list[str], limit: int, backend: str) -> None:
    import lm_eval

    import taskladder.harness_ext.backend  # noqa: F401
    from taskladder.harness_ext.runner import resolve_tasks, task_manager

    manager = task_manager()
    names = resolve_tasks(tasks, [n for n in manager.all_tasks if n.startswith("ladder_")])
    lm_eval.simple_evaluate(model=backend, model_args={"pretrained": str(model_dir),
                                                       "device": "cpu"},
                            tasks=names, limit=limit, task_manager=manager, batch_size=32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="ladder_arc_easy_rc,ladder_hellaswag_rc")
    ap.add_argument("--limit", type=int, default=200, help="questions per task (0: all)")
    ap.add_argument("--vocab", default="4096", help="BPE vocabulary size, or 'olmo' (50k)")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 d)")
    ap.add_argument("--model", type=Path, default=None, help="score this model folder instead")
    ap.add_argument("--backends", default="hf,ladder-hf",
                    help="NAME[:DTYPE],...; the first is the reference")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--batch-size", type=int, default=32, help="of the hf and vllm backends")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timings per backend and task (median and spread reported)")
    ap.add_argument("--many", type=int, default=0, help="time evaluate_many on N checkpoints")
    ap.add_argument("--devices", type=int, default=None,
                    help="with --many: requests/s of 1 worker and of this many (instead of "
                    "evaluate_many against per-checkpoint evaluation)")
    args = ap.parse_args()

    import torch
    from tiny_model import make_tiny_olmo2

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min); CUDA: "
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
