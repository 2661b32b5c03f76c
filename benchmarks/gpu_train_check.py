"""GPU training figures: olmo-core trains the paper's 190M size in bf16 for ~50 steps.

The ladder's own Trainer (`taskladder.training.run.build_trainer`: FSDP with bf16 parameters
and fp32 reductions, AdamW, cosine schedule, torch.compile) on one GPU, on random token ids in
an olmo-core token file (no network, no data set). Prints tokens/s and MFU: the model's
FLOPs per token (olmo-core's `num_flops_per_token`, attention included) x tokens/s over the
peak, by default the H200's ~790 bf16 TFLOP/s measured peak (goal: MFU >= 40%). The first
`--warmup` steps (compilation, allocator) are not timed.

    python benchmarks/gpu_train_check.py [--size 190M] [--steps 50] [--batch 64] [--micro 8]
    python benchmarks/gpu_train_check.py --device cpu --preset paper-small-ladder --size d48 \\
        --steps 4 --warmup 1 --batch 4 --micro 4 --seq 256      # smoke check without a GPU

benchmarks/gpu_check.sh calls it; it exits 1 when the step loss is not finite.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from olmo_core.train.callbacks import Callback

from taskladder.training.corpus import TokenData
from taskladder.training.model import model_config
from taskladder.training.run import build_trainer
from taskladder.training.spec import load_ladder_spec

H200_BF16_PEAK = 790e12  # measured dense bf16 matmul peak of the H200 (the figure)


class StepTimer(Callback):
    """Wall time of each step (synchronised on GPU) and the last train loss."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.times: list[float] = []
        self.loss = math.nan
        self._t0 = 0.0

    def pre_step(self, batch) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()

    def post_step(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t0)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.loss = metrics.get("train/CE loss", self.loss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper-ladder")
    ap.add_argument("--size", default="190M")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    ap.add_argument("--batch", type=int, default=64, help="global batch in sequences")
    ap.add_argument("--micro", type=int, default=8, help="sequences per microbatch")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak", type=float, default=H200_BF16_PEAK, help="peak FLOP/s for MFU")
    args = ap.parse_args()

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("gpu_train_check: no CUDA device", file=sys.stderr)
        return 2
    base = load_ladder_spec(args.preset)
    size = next(s for s in base.sizes if s.name == args.size)
    size = size.model_copy(update={"batch_sequences": args.batch})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vocab = base.tokenizer.vocab_size
        dtype = np.uint32 if vocab >= 2**16 else np.uint16
        need = (args.steps + 2) * args.batch * args.seq
        rng = np.random.default_rng(0)
        for name, n in (("train", need), ("val", 4 * args.seq)):
            rng.integers(0, vocab - 1, n, dtype=dtype).tofile(root / f"{name}.npy")
        data = TokenData(
            tokenizer_dir=root, train_paths=(root / "train.npy",), val_paths=(root / "val.npy",),
            vocab_size=vocab, eos_token_id=vocab - 1, pad_token_id=vocab - 1,
            train_tokens=need, val_tokens=4 * args.seq, dtype=np.dtype(dtype).name)
        spec = base.model_copy(update={
            "sizes": [size], "sequence_length": args.seq, "device": args.device,
            "rank_microbatch_sequences": args.micro, "compile_model": not args.no_compile,
            "output_dir": str(root / "out")})
        plan = dataclasses.replace(spec.run_plan(size, spec.multipliers[0]), steps=args.steps,
                                   checkpoint_steps=[args.steps], warmup_steps=args.warmup,
                                   batch_tokens=args.batch * args.seq)
        run_dir = root / "run"
        run_dir.mkdir()
        trainer = build_trainer(plan, size, spec, data, run_dir, progress=False)
        sys.excepthook = sys.__excepthook__  # olmo-core's hook logs to handlers we silence
        for name in ("val_loss", "checkpointer"):  # time training only: no save, no export
            trainer.callbacks.pop(name, None)
        timer = StepTimer(cuda)
        trainer.add_callback("gpu_check_timer", timer)
        start = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - start

    timed = timer.times[args.warmup:]
    tokens_per_s = plan.batch_tokens * len(timed) / sum(timed)
    flops_per_token = model_config(size, spec.vocab_size).build(
        init_device="meta").num_flops_per_token(args.seq)
    mfu = flops_per_token * tokens_per_s / args.peak
    name = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"gpu_train_check: olmo-core {args.size} (N {plan.N:,.0f}), {name}, "
          f"{'bf16 FSDP' if cuda else 'fp32'}, compile {not args.no_compile and cuda}, "
          f"batch {args.batch} x {args.seq} tokens (micro {args.micro}), {args.steps} steps "
          f"({len(timed)} timed), wall {wall:.1f} s")
    print(f"gpu_train_check: {tokens_per_s:,.0f} tokens/s, {flops_per_token:.3e} FLOPs/token, "
          f"MFU {100 * mfu:.1f}% of {args.peak / 1e12:.0f} TFLOP/s "
          f"(goal >= 40%), last loss {timer.loss:.3f}")
    return 0 if math.isfinite(timer.loss) else 1


if __name__ == "__main__":
    sys.exit(main())
