"""Ladder specs: the paper's numbers, the micro ladder's shape, bad input as one line."""

from __future__ import annotations

import math

import pytest
import tomli_w
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.training.model import model_config
from taskladder.training.spec import LadderSpec, load_ladder_spec

PAPER_N = {"190M": 190_354_176, "370M": 371_262_464, "760M": 758_220_288, "1.3B": 1_279_395_840}


def test_paper_preset_reproduces_method_numbers():
    spec = LadderSpec.paper()
    plans = spec.plan()
    assert len(plans) == 16
    assert {p.size: p.N for p in plans} == PAPER_N
    assert {p.size: p.batch_sequences for p in plans} == {
        "190M": 128, "370M": 192, "760M": 320, "1.3B": 384}
    p190 = next(p for p in plans if p.run == "190M-1xC")
    assert p190.lr == pytest.approx(0.0047 * (190_354_176 / 1.08e8) ** (-1 / 3) / 4)
    assert p190.warmup_steps == round(190_354_176 / (128 * 4096))
    assert p190.tokens == pytest.approx(20 * 190_354_176, rel=2e-3)
    assert sum(p.flops for p in plans) == pytest.approx(5.15e21, rel=2e-3)
    target = spec.target_spec().plan()[0]
    assert target.N == 6_887_575_552
    assert target.tokens == pytest.approx(3_945_065_873_408, rel=1e-3)


def test_n_counts_every_parameter_but_the_input_embedding():
    spec = LadderSpec.cpu_micro()
    size = spec.sizes[0]
    model = model_config(size, spec.vocab_size).build(init_device="cpu")
    total = sum(p.numel() for p in model.parameters())
    embedding = model.embeddings.weight.numel()
    assert spec.plan()[0].N == total - embedding
    assert model.lm_head.w_out.weight.numel() == size.d_model * spec.vocab_size  # head included


def test_cpu_micro_plan_shape():
    spec = LadderSpec.cpu_micro()
    plans = spec.plan()
    assert len(plans) == 9 and len({p.size for p in plans}) == 3
    for p in plans:
        assert 4 <= len(p.checkpoint_steps) <= 6 and p.checkpoint_steps[-1] == p.steps
        assert p.warmup_steps < p.steps
    assert all(s.head_dim in (32, 64) for s in spec.sizes)
    target = spec.target_spec().plan()[0]
    assert target.N > max(p.N for p in plans) and target.tokens > max(p.tokens for p in plans)
    assert "d64L3-0.15xC" in spec.describe_plan()


@settings(max_examples=40, deadline=None)
@given(mult=st.floats(0.01, 20), batch=st.integers(1, 64), per_run=st.integers(1, 12))
def test_plan_invariants(mult, batch, per_run):
    spec = LadderSpec.cpu_micro(multipliers=[mult], checkpoints_per_run=per_run)
    size = spec.sizes[0].model_copy(update={"batch_sequences": batch})
    p = spec.run_plan(size, mult)
    assert p.tokens == p.steps * p.batch_tokens >= mult * 20 * p.N
    assert (p.steps - 1) * p.batch_tokens < mult * 20 * p.N or p.steps == 1
    assert p.checkpoint_steps == sorted(set(p.checkpoint_steps))
    assert p.checkpoint_steps[-1] == p.steps and len(p.checkpoint_steps) <= per_run + 1
    assert math.isclose(p.flops, 6 * p.N * p.tokens)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"sizes": [{"name": "a", "d_model": 0, "n_layers": 2, "n_heads": 1,
                     "batch_sequences": 4}]}, "d_model"),
        ({"sizes": [{"name": "a", "d_model": 64, "n_layers": -1, "n_heads": 1,
                     "batch_sequences": 4}]}, "n_layers"),
        ({"sizes": [{"name": "a", "d_model": 64, "n_layers": 2, "n_heads": 3,
                     "batch_sequences": 4}]}, "does not divide"),
        ({"multipliers": [0.5, -1]}, "multipliers"),
        ({"sequence_length": 4096}, "longer than the tokenizer"),
        ({"corpus": {"kind": "text"}}, "corpus.paths is empty"),
    ],
)
def test_impossible_specs_fail_with_one_line(change, needle):
    with pytest.raises(InputError) as err:
        load_ladder_spec("cpu-micro", change)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_yaml_and_toml_files_with_preset_and_relative_paths(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n\nworld\n")
    data = {"preset": "cpu-micro", "multipliers": [0.1], "output_dir": "out",
            "corpus": {"kind": "text", "paths": ["c.txt"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "s.toml").write_text(tomli_w.dumps(data))
    a = load_ladder_spec(str(tmp_path / "s.yaml"))
    b = load_ladder_spec(str(tmp_path / "s.toml"))
    assert a == b
    assert a.multipliers == [0.1] and a.corpus.paths == [str(corpus)]
    assert a.out_dir() == tmp_path / "out" and len(a.sizes) == 3


def test_cli_reports_bad_spec_and_missing_corpus(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"preset": "cpu-micro", "output_dir": str(tmp_path / "o"),
                                    "corpus": {"kind": "text", "paths": ["missing.txt"]}}))
    assert main(["train", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskladder: error: corpus.paths:") and "missing.txt" in err
    assert "\n" not in err and not (tmp_path / "o").exists()
    assert main(["train", "cpu-micro", "--dry-run"]) == 0
    assert "d64L2-0.1xC" in capsys.readouterr().out
