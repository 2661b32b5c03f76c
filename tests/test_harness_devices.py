"""Which engine and which devices the evaluation picks, tested on a CPU machine: `fast` is
`ladder-vllm` only on a GPU machine with a GPU build of vLLM, and `--devices N` gives each
local worker its own GPU (so one vLLM engine per device) or a share of the CPU cores. The
machine's answers (vLLM installed? which build? CUDA? how many GPUs?) are the only things
replaced: this machine has no GPU."""

from __future__ import annotations

import os

import pytest

from taskladder.common.errors import InputError
from taskladder.harness_ext import preflight, shards


@pytest.fixture
def gpu_machine(monkeypatch):
    """This process as on a machine with four GPUs and a GPU build of vLLM installed."""
    import torch

    monkeypatch.setattr(preflight, "find_spec", lambda name: object())
    monkeypatch.setattr(preflight, "vllm_version", lambda: "0.11.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return monkeypatch


def test_fast_is_ladder_hf_here():
    import torch

    assert not torch.cuda.is_available(), "this test describes a machine without a GPU"
    assert preflight.pick_fast() == "ladder-hf"


def test_fast_is_ladder_vllm_only_with_a_gpu_build_of_vllm_and_cuda(gpu_machine):
    import torch

    assert preflight.pick_fast() == "ladder-vllm"
    gpu_machine.setattr(preflight, "vllm_version", lambda: "0.32.0+cpu")  # vLLM's CPU build
    assert preflight.pick_fast() == "ladder-hf"
    gpu_machine.setattr(preflight, "vllm_version", lambda: "0.11.0")
    gpu_machine.setattr(torch.cuda, "is_available", lambda: False)  # vLLM, but no GPU
    assert preflight.pick_fast() == "ladder-hf"
    gpu_machine.setattr(torch.cuda, "is_available", lambda: True)
    gpu_machine.setattr(preflight, "find_spec", lambda name: None)  # a GPU, no vLLM
    assert preflight.pick_fast() == "ladder-hf"


def test_the_picked_engine_is_part_of_the_evaluate_stage_key(gpu_machine):
    """Scores from vLLM and from ladder-hf never share a results folder."""
    from taskladder import stages
    from taskladder.config import load_spec

    spec = load_spec("cpu-micro")
    on_gpu = stages._eval_settings(spec)
    assert on_gpu["engine"] == "ladder-vllm" and stages.fast_backend("fast") == "ladder-vllm"
    on_nodes = stages._eval_settings(spec.with_evaluate(launcher="slurm"))
    assert on_nodes["engine"] == "picked on each Slurm node"  # not this host's pick
    gpu_machine.setattr(preflight, "find_spec", lambda name: None)
    assert "engine" not in stages._eval_settings(spec)


def test_one_worker_per_gpu_so_one_engine_per_device(gpu_machine):
    assert shards.local_workers(4) == [{"CUDA_VISIBLE_DEVICES": g} for g in "0123"]
    assert shards.local_workers(2, "cuda") == [{"CUDA_VISIBLE_DEVICES": "0"},
                                               {"CUDA_VISIBLE_DEVICES": "1"}]
    with pytest.raises(InputError, match=r"^devices: 5 is more than the 4 GPUs visible here$"):
        shards.local_workers(5)


def test_workers_keep_to_the_gpus_this_process_was_given(gpu_machine):
    import torch

    gpu_machine.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpu_machine.setattr(torch.cuda, "device_count", lambda: 2)
    assert shards.local_workers(2) == [{"CUDA_VISIBLE_DEVICES": "3"},
                                       {"CUDA_VISIBLE_DEVICES": "5"}]


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert shards.local_workers(4) == [{"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": ""}] * 4
    assert shards.local_workers(32, "cpu")[0]["OMP_NUM_THREADS"] == "1"
    with pytest.raises(InputError, match=r"^devices: must be a positive integer, got 0$"):
        shards.local_workers(0)


def test_more_devices_than_gpus_fails_before_the_first_stage(gpu_machine, tmp_path, capsys):
    from taskladder.cli import main

    line = "taskladder: error: devices: 8 is more than the 4 GPUs visible here\n"
    assert main(["run", "--dry-run", "--devices", "8", "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == line  # --dry-run refuses as the run does
    assert main(["run", "--devices", "8", "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == line
    assert not (tmp_path / "o").exists()
