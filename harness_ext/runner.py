"""Evaluate model directories on `ladder_*` tasks and write lm-eval's results JSON.

The JSON is what `lm_eval.simple_evaluate` returns (`results[task]["<metric>,none"]`,
`configs`, `config`, environment info, ...) plus a top-level key `taskladder` holding the
model directory's `ladder_meta.json` when there is one (run, size, N, D, step, flops,
lm_losses: the law engine's run metadata).

`evaluate_many` scores a whole ladder in one process: the tasks, their documents and the
environment info are built once, then each model is loaded in turn and scored on them.
`evaluate` is the same path for one model.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import time
from collections.abc import Callable
from pathlib import Path

from taskladder.common.errors import InputError
from taskladder.common.io import read_json, write_json
from taskladder.common.meta import META_FILE, RESULTS_KEY, LadderMeta
from taskladder.harness_ext.preflight import BACKENDS, DTYPES, check_backend

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
RESULTS_GLOB = "results_*.json"
__all__ = ["BACKENDS", "evaluate", "evaluate_many", "resolve_tasks", "task_manager"]


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


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit <= 0):
        raise InputError(f"limit must be a positive integer, got {limit!r}")


def _meta(model_dir: Path) -> dict | None:
    """The directory's LadderMeta as a dict (validated), or None when it has none."""
    if not (model_dir / META_FILE).is_file():
        return None
    LadderMeta.from_dict(read_json(model_dir / META_FILE), where=str(model_dir / META_FILE))
    return read_json(model_dir / META_FILE)


def model_args(backend: str, model_dir: Path, device: str, dtype: str, batch_size: int) -> dict:
    """lm-eval model arguments of a backend (vLLM: the settings its CPU build needs here)."""
    if backend in ("vllm", "ladder-vllm"):
        from taskladder.harness_ext.preflight import vllm_on_cpu

        # lm-eval's vllm model keeps the last max_model_len - 1 tokens of a request, hf the last
        # window + 1 (the last one only as a target): two more tokens give both the same
        # context when a request is longer than the model's window.
        os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
        args = {"pretrained": str(model_dir), "dtype": dtype, "batch_size": batch_size,
                "max_model_len": _window(model_dir) + 2, "enable_prefix_caching": True}
        if vllm_on_cpu():
            # In-process engine and worker: with vLLM's default engine and worker processes
            # the CLI does not exit after the results (and 2 cores are shared with them).
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # gpu_memory_utilization is the share of host memory reserved for the KV cache;
            # blocks of 32 tokens (the CPU minimum) leave less of a prompt outside the cache.
            args |= {"enforce_eager": True, "distributed_executor_backend": "uni",
                     "gpu_memory_utilization": 0.3, "block_size": 32}
        return args
    return {"pretrained": str(model_dir), "device": device, "dtype": dtype,
            "batch_size": batch_size}


def _window(model_dir: Path) -> int:
    """The window lm-eval's hf model uses: max_position_embeddings (2048 when absent)."""
    return int(read_json(model_dir / "config.json").get("max_position_embeddings") or 2048)


class _Session:
    """Tasks, documents and environment info built once; models scored against them in turn."""

    def __init__(self, tasks: list[str] | str, limit: int | None, backend: str,
                 device: str | None, dtype: str, batch_size: int, model_dirs: list[Path]):
        from taskladder.harness_ext.olmes import data_source

        _check_limit(limit)
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        self.backend = check_backend(backend, device, model_dirs)
        if data_source() == "offline":
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        self.manager = task_manager()
        known = [n for n in self.manager.all_tasks if n.startswith("ladder_")]
        self.names = resolve_tasks(tasks, known)
        self.limit, self.dtype, self.batch_size = limit, dtype, batch_size
        self.device = device or default_device()
        self.loaded = None
        self.env: dict | None = None

    def _load(self) -> None:
        from lm_eval.loggers.utils import add_env_info, get_git_commit_hash

        import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf, ladder-vllm)

        self.loaded = self.manager.load(self.names)
        for task in self.loaded["tasks"].values():
            task.set_fewshot_seed(seed=1234)
        self.env = {"git_hash": get_git_commit_hash()}
        add_env_info(self.env)

    def score(self, model_dir: Path) -> tuple[dict, int]:
        """lm-eval's results for one model (as `simple_evaluate` builds them) and the number of
        loglikelihood requests it answered."""
        import lm_eval.evaluator
        from lm_eval.api.registry import get_model
        from lm_eval.loggers.utils import add_tokenizer_info

        from taskladder.harness_ext.olmes import SOURCE_ENV

        if self.loaded is None:
            self._load()
        start_date = time.time()
        args = model_args(self.backend, model_dir, self.device, self.dtype, self.batch_size)
        lm = get_model(self.backend).create_from_arg_obj(args, {})
        try:
            out = lm_eval.evaluator.evaluate(lm=lm, task_dict=self.loaded, limit=self.limit,
                                             log_samples=False)
            requests = sum(len(t.instances) for t in self.loaded["tasks"].values())
            info = lm.get_model_info() if hasattr(lm, "get_model_info") else {}
            out["config"] = {"model": self.backend, "model_args": args, **info,
                             "batch_size": self.batch_size, "batch_sizes": [],
                             "device": self.device, "use_cache": None, "limit": self.limit,
                             "bootstrap_iters": 100000, "gen_kwargs": None,
                             "random_seed": 0, "numpy_seed": 1234, "torch_seed": 1234,
                             "fewshot_seed": 1234,
                             "data_source": os.environ.get(SOURCE_ENV, "offline")}
            out.update(self.env, date=start_date)
            add_tokenizer_info(out, lm)
        finally:
            _release(lm)
        meta = _meta(model_dir)
        if meta is not None:
            out[RESULTS_KEY] = meta
        return out, requests


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _release(lm) -> None:
    """Free a vLLM engine before the next model loads (its KV cache is a share of memory);
    an hf model goes with its last reference."""
    if hasattr(getattr(lm, "model", None), "llm_engine"):
        del lm.model
        import gc

        gc.collect()


def _write(out: dict, path: Path) -> Path:
    from lm_eval.utils import handle_non_serializable

    return write_json(path, out, default=handle_non_serializable)


def _stamped(folder: Path) -> Path:
    return folder / f"results_{dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H-%M-%S.%f')}.json"


def evaluate(
    model_dir: str | Path,
    tasks: list[str] | str,
    limit: int | None = None,
    output: str | Path = "evals",
    backend: str = "ladder-hf",
    batch_size: int = 32,
    device: str | None = None,
    dtype: str = "float32",
) -> Path:
    """Run lm-eval on `model_dir`; returns the results JSON written (at `output` when it ends in
    .json, else `output/results_<UTC time>.json`)."""
    path = check_model_dir(model_dir)
    _meta(path)
    session = _Session(tasks, limit, backend, device, dtype, batch_size, [path])
    out, _ = session.score(path)
    output = Path(output)
    return _write(out, output if output.suffix == ".json" else _stamped(output))


def results_dir(model_dir: Path, output_root: Path) -> Path:
    """Where `evaluate_many` writes a model's results: `<root>/<run>/step<step>` from its
    ladder_meta.json, else `<root>/<folder name>`."""
    meta = _meta(model_dir)
    if meta is None:
        return output_root / model_dir.name
    return output_root / str(meta["run"]) / f"step{int(meta['step']):07d}"


def evaluate_many(
    model_dirs: list[Path],
    tasks: list[str] | str,
    limit: int | None,
    output_root: Path,
    backend: str = "ladder-hf",
    echo: Callable[[str], object] = print,
    batch_size: int = 32,
    device: str | None = None,
    dtype: str = "float32",
) -> list[Path]:
    """Score every model in one process; one results JSON per model (the layout and contents of
    `evaluate`) under `results_dir(model, output_root)`. A model whose folder already holds a
    results file is skipped (its newest file is returned). Prints requests/s."""
    dirs = [check_model_dir(d) for d in model_dirs]
    dests = [results_dir(d, Path(output_root)) for d in dirs]
    session = _Session(tasks, limit, backend, device, dtype, batch_size, dirs)
    paths: list[Path] = []
    todo = sum(not any(dest.glob(RESULTS_GLOB)) for dest in dests)
    done = total_requests = 0
    total_seconds = 0.0
    for model_dir, dest in zip(dirs, dests, strict=True):
        existing = sorted(dest.glob(RESULTS_GLOB))
        if existing:
            paths.append(existing[-1])
            continue
        t0 = time.perf_counter()
        out, requests = session.score(model_dir)
        seconds = time.perf_counter() - t0
        paths.append(_write(out, _stamped(dest)))
        done += 1
        total_requests += requests
        total_seconds += seconds
        echo(f"   [{done}/{todo}] {dest.relative_to(output_root)}: {requests} requests in "
             f"{seconds:.1f} s ({requests / seconds:.0f} requests/s)")
    if done:
        echo(f"   {done} models scored with {session.backend}: {total_requests} requests in "
             f"{total_seconds:.1f} s ({total_requests / total_seconds:.0f} requests/s); "
             f"{len(dirs) - done} already done")
    return paths
