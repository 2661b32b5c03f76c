"""Requests/s of the ladder-hf backend against lm-eval's hf backend, same model, same requests.

    .venv/bin/python benchmarks/bench_eval.py [--task ladder_arc_easy_rc] [--limit 200]
        [--vocab 4096 | --vocab olmo] [--d-model 128 --layers 4] [--batch-size 32]

Builds a freshly initialised Olmo2 (weights do not change the cost), lets lm-eval build the
task's requests once, then times `loglikelihood` of each backend on the same list (model and
data loading excluded), checks that both give the same answers, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="ladder_arc_easy_rc")
    ap.add_argument("--limit", type=int, default=200, help="questions")
    ap.add_argument("--vocab", default="4096", help="BPE vocabulary size, or 'olmo' (50k)")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32, help="of the hf backend")
    args = ap.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM

    from taskladder.harness_ext.backend import LadderHFLM
    from taskladder.harness_ext.runner import task_manager
    from taskladder.harness_ext.tiny_model import make_tiny_olmo2

    task = task_manager().load([args.task])["tasks"][args.task]
    task.build_all_requests(limit=args.limit)
    requests = task.instances
    with tempfile.TemporaryDirectory() as tmp:
        vocab = None if args.vocab == "olmo" else int(args.vocab)
        model_dir = make_tiny_olmo2(tmp, vocab_size=vocab, d_model=args.d_model,
                                    n_layers=args.layers, n_heads=args.d_model // 64, max_len=4096)
        backends = {"hf": HFLM, "ladder-hf": LadderHFLM}
        timing, answers = {}, {}
        for name, cls in backends.items():
            lm = cls(pretrained=str(model_dir), device="cpu", batch_size=args.batch_size)
            start = time.perf_counter()
            answers[name] = lm.loglikelihood(requests, disable_tqdm=True)
            timing[name] = time.perf_counter() - start
    diff = max(abs(a[0] - b[0]) for a, b in zip(answers["hf"], answers["ladder-hf"], strict=True))
    same_greedy = all(a[1] == b[1] for a, b in zip(answers["hf"], answers["ladder-hf"], strict=True))
    n = len(requests)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model: Olmo2 d{args.d_model} L{args.layers}, vocab {args.vocab}; task {args.task}, "
          f"{args.limit} questions, {n} requests")
    for name, sec in timing.items():
        print(f"{name:10s} {sec:8.2f} s  {n / sec:8.1f} requests/s")
    print(f"speed-up ladder-hf / hf: {timing['hf'] / timing['ladder-hf']:.1f}x")
    print(f"max |loglikelihood difference|: {diff:.2e}; greedy flags identical: {same_greedy}")


if __name__ == "__main__":
    main()
