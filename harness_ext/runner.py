"""Evaluate one model directory on `ladder_*` tasks and write lm-eval's results JSON.

The JSON is lm-eval's (`results[task]["<metric>,none"]`, `configs`, `config`, ...) plus a
top-level key `taskladder` holding the model directory's `ladder_meta.json` when there is one
(run, size, N, D, step, flops, lm_losses: the law engine's run metadata).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import tempfile
from pathlib import Path

from taskladder.common.errors import InputError
from taskladder.common.meta import META_FILE

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
BACKENDS = ("ladder-hf", "hf", "vllm")
BACKEND_ALIASES = {"fast": "ladder-hf"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def resolve_tasks(tasks: list[str] | str, known: list[str]) -> list[str]:
    """Names, wildcards or task keys (`arc_easy` -> `ladder_arc_easy_rc`) -> known task names."""
    names = [t for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise InputError("tasks: empty; give task names such as ladder_core or ladder_arc_easy_rc")
    out: list[str] = []
    for name in (t.strip() for t in names):
        candidates = [name, f"ladder_{name}_rc"]
        hits = [c for c in candidates if c in known] or fnmatch.filter(known, name)
        if not hits:
            raise InputError(
                f"tasks: {name!r} is not a ladder task; known: {', '.join(sorted(known))}"
            )
        out += [h for h in hits if h not in out]
    return out


def check_model_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise InputError(f"model-dir {path}: no config.json (not a Hugging Face model directory)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(
            f"model-dir {path}: no tokenizer ({' / '.join(TOKENIZER_FILES)}); save the tokenizer "
            "next to the weights (tokenizer.save_pretrained(dir))"
        )
    return path


def _model_args(backend: str, model_dir: Path) -> dict:
    if backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise InputError(
                "backend vllm: vllm is not installed (pip install 'taskladder[vllm]')"
            ) from exc
        # Every request of a task starts with the same 5-shot prefix: let vLLM cache it.
        return {"pretrained": str(model_dir), "enable_prefix_caching": True}
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"pretrained": str(model_dir), "device": device}


def _write_json(data: dict, path: Path) -> None:
    from lm_eval.utils import handle_non_serializable

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as fh:
        json.dump(data, fh, indent=2, default=handle_non_serializable, ensure_ascii=False)
    os.replace(fh.name, path)


def evaluate(
    model_dir: str | Path,
    tasks: list[str] | str,
    limit: int | None = None,
    output: str | Path = "evals",
    backend: str = "ladder-hf",
    batch_size: int = 32,
) -> Path:
    """Run lm-eval on `model_dir`; returns the results JSON written (at `output` when it ends in
    .json, else `output/results_<UTC time>.json`)."""
    backend = BACKEND_ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit <= 0):
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    path = check_model_dir(model_dir)
    meta_file = path / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None

    from taskladder.harness_ext.olmes import SOURCE_ENV, data_source

    if data_source() == "offline":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    manager = task_manager()
    names = resolve_tasks(tasks, [n for n in manager.all_tasks if n.startswith("ladder_")])
    model_args = _model_args(backend, path)

    import lm_eval

    import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf)

    out = lm_eval.simple_evaluate(
        model=backend,
        model_args=model_args,
        tasks=names,
        limit=limit,
        task_manager=manager,
        batch_size=batch_size,
    )
    out.pop("samples", None)
    out["config"]["data_source"] = os.environ.get(SOURCE_ENV, "offline")
    if meta is not None:
        out["taskladder"] = meta
    output = Path(output)
    if output.suffix != ".json":
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")
        output = output / f"results_{stamp}.json"
    _write_json(out, output)
    return output
