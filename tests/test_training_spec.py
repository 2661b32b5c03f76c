"""Ladder specs: the paper's numbers, the micro ladder's shape, bad input as one line."""

from __future__ import annotations

import math

import pytest
import tomli_w
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskladder.cli import main
from taskladder.common.errors import InputError
from taskladder.common.facts import OLMO_SIZES, TARGETS
from taskladder.training.model import model_config
from taskladder.training.spec import LadderSpec, load_ladder_spec


def test_paper_preset_n_and_target_match_the_released_ladder():
    """N is computed by olmo-core from the shapes; the released ladder logged its own N."""
    spec = LadderSpec.paper()
    plans = spec.plan()
    assert len(plans) == 16
    assert {p.size: p.N for p in plans} == {
        size: OLMO_SIZES[size][0] for size in ("190M", "370M", "760M", "1B")}
    for p in plans:  # steps rounded up to whole batches: at most one batch over m x 20 N
        assert 0 <= p.tokens - p.multiplier * 20 * p.N < p.batch_tokens
    target = spec.target_ladder().plan()[0]
    n, d = TARGETS["7B-4T"]
    assert target.N == n  # the 7B shape gives the 7B N
    assert 0 <= target.tokens - d < target.batch_tokens


def test_paper_small_keeps_the_papers_ratios():
    paper, small = LadderSpec.paper(), LadderSpec.paper_small()
    assert len(small.plan()) == 16

    def ratios(values):
        return [v / values[0] for v in values]

    for field in ("d_model", "n_layers", "batch_sequences"):
        assert ratios([getattr(s, field) for s in small.sizes]) == pytest.approx(
            ratios([getattr(s, field) for s in paper.sizes]), rel=0.02), field
    assert ratios(small.multipliers) == ratios(paper.multipliers)
    # warmup is the same share of every run as in the paper (N tokens of a 20 N-token 1xC run)
    for p_paper, p_small in zip(paper.plan(), small.plan(), strict=True):
        share = p_paper.warmup_steps / p_paper.steps
        assert p_small.warmup_steps / p_small.steps == pytest.approx(share, rel=0.15)
    steps = [p.steps for p in small.plan()]
    assert 200 <= min(steps) and max(steps) < 5000  # a few hundred steps per run and up


def test_n_counts_every_parameter_but_the_input_embedding():
    spec = LadderSpec.cpu_micro()
    size = spec.sizes[0]
    model = model_config(size, spec.vocab_size).build(init_device="cpu")
    total = sum(p.numel() for p in model.parameters())
    embedding = model.embeddings.weight.numel()
    assert spec.plan()[0].N == total - embedding
    assert model.lm_head.w_out.weight.numel() == size.d_model * spec.vocab_size  # head included


def test_cpu_micro_plan_shape():
    """The embedded default is designed to predict: N spans >= 4x, the target lies beyond the
    largest size by at most 2x and inside the ladder's tokens, and every run but the shortest
    keeps a checkpoint besides its final one in the last 5% of its steps (what step 1 averages)."""
    spec = LadderSpec.cpu_micro()
    plans = spec.plan()
    assert len(plans) == 12 and len({p.size for p in plans}) == 4
    for p in plans:
        assert 2 <= len(p.checkpoint_steps) <= 3 and p.checkpoint_steps[-1] == p.steps
        assert p.warmup_steps < p.steps
        if p.steps >= 1 / spec.end_fraction:
            assert p.checkpoint_steps[-2] >= 0.95 * p.steps
    assert all(s.head_dim == 32 for s in spec.sizes)
    n = [p.N for p in plans]
    target = spec.target_ladder().plan()[0]
    assert max(n) >= 4 * min(n) and max(n) < target.N <= 2 * max(n)
    assert min(p.tokens for p in plans) < target.tokens < max(p.tokens for p in plans)
    assert "d160-0.03xC" in spec.describe_plan()


@settings(max_examples=40, deadline=None)
@given(mult=st.floats(0.01, 20), batch=st.integers(1, 64), per_run=st.integers(1, 12),
       end=st.integers(0, 4), fraction=st.floats(0.01, 0.5))
@example(mult=1.0, batch=2, per_run=1, end=1, fraction=1 / 3)  # end step on the boundary
def test_plan_invariants(mult, batch, per_run, end, fraction):
    spec = LadderSpec.cpu_micro(multipliers=[mult], checkpoints_per_run=per_run,
                                end_checkpoints=end, end_fraction=fraction)
    size = spec.sizes[0].model_copy(update={"batch_sequences": batch})
    p = spec.run_plan(size, mult)
    assert p.tokens == p.steps * p.batch_tokens >= mult * 20 * p.N
    assert (p.steps - 1) * p.batch_tokens < mult * 20 * p.N or p.steps == 1
    assert p.checkpoint_steps == sorted(set(p.checkpoint_steps))
    assert p.checkpoint_steps[-1] == p.steps and len(p.checkpoint_steps) <= per_run + 1 + end
    evenly = max(1, math.ceil(p.steps / per_run))
    near_end = [s for s in p.checkpoint_steps if s % evenly and s != p.steps]
    assert all(p.steps - s <= fraction * p.steps for s in near_end) and p.checkpoint_steps[0] >= 1
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
        ({"tokenizer": {"kind": "path"}}, "tokenizer.path is missing"),
    ],
)
def test_impossible_specs_fail_with_one_line(change, needle):
    with pytest.raises(InputError) as err:
        load_ladder_spec("cpu-micro-ladder", change)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_yaml_and_toml_files_with_preset_and_relative_paths(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n\nworld\n")
    data = {"preset": "cpu-micro-ladder", "multipliers": [0.1], "output_dir": "out",
            "corpus": {"kind": "text", "paths": ["c.txt"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "s.toml").write_text(tomli_w.dumps(data))
    a = load_ladder_spec(str(tmp_path / "s.yaml"))
    b = load_ladder_spec(str(tmp_path / "s.toml"))
    assert a == b
    assert a.multipliers == [0.1] and a.corpus.paths == [str(corpus)]
    assert a.out_dir() == tmp_path / "out" and len(a.sizes) == 4


def test_cli_reports_bad_spec_and_missing_corpus(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"preset": "cpu-micro-ladder", "output_dir": str(tmp_path / "o"),
                                    "corpus": {"kind": "text", "paths": ["missing.txt"]}}))
    assert main(["train", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskladder: error: corpus.paths:") and "missing.txt" in err
    assert "\n" not in err and not (tmp_path / "o").exists()
    assert main(["train", "cpu-micro-ladder", "--dry-run"]) == 0
    assert "d64-0.03xC" in capsys.readouterr().out
    spec.write_text(yaml.safe_dump({"preset": "cpu-micro-ladder", "output_dir": str(tmp_path / "o"),
                                    "corpus": {"kind": "text"}}))
    assert main(["train", str(spec), "--no-progress"]) == 2
    assert "corpus.kind is 'text' but corpus.paths is empty" in capsys.readouterr().err


def test_train_without_the_train_extra_names_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "olmo_core" else real(name, *a))
    assert main(["train", "cpu-micro-ladder", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("taskladder: error: taskladder train needs the 'train' extra (olmo_core is "
                   "not installed): pip install 'taskladder[train]'")


def test_old_preset_names_work_one_release_with_a_notice(tmp_path, capsys):
    """The training presets were named like the pipeline specs (cpu-micro, paper)."""
    assert load_ladder_spec("cpu-micro") == load_ladder_spec("cpu-micro-ladder")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'cpu-micro' is deprecated, use 'cpu-micro-ladder'" in err
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"preset": "paper-small"}))
    assert load_ladder_spec(str(tmp_path / "s.yaml")).name == "paper-small"
    assert "use 'paper-small-ladder'" in capsys.readouterr().err
