"""Ladder specs: which models, how long, on what data; presets as named constructors.

A `LadderSpec` is validated completely (including the model shapes) before any compute, and
`plan()` turns it into the concrete runs (steps, batch, learning rate, warmup, checkpoints,
estimated cost) that training will execute. The rules are METHOD.md section 2:
1xC = 20 tokens per non-embedding parameter, peak LR = 0.0047 * (N / 1.08e8)^(-1/3) / 4,
warmup = N / batch_tokens steps, cosine decay to 10% of the peak.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskladder.common.errors import InputError, deprecated
from taskladder.common.facts import CHINCHILLA_TOKENS_PER_PARAM, TARGETS, train_flops
from taskladder.common.specfile import read_mapping, resolve_path, validate

# Assumed sustained throughput for cost estimates before anything is measured.
H100_BF16_PEAK_FLOPS = 989e12
GPU_MFU_ESTIMATE = 0.40
CPU_FLOPS_ESTIMATE = 10e9  # 2 cores, fp32, micro models incl. per-step overhead (measured)


MAX_MULTIPLIER = 1000.0  # Chinchilla multiples; the paper's ladder goes to 10xC

class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSize(_Spec):
    """One OLMo-2 model shape of the ladder (olmo-core `TransformerConfig.llama_like`)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    d_model: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    hidden_size_multiplier: float | None = Field(default=None, gt=0)
    hidden_size_multiple_of: int = Field(default=256, gt=0)
    batch_sequences: int = Field(gt=0, description="global batch size in sequences")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSize:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"size {self.name}: n_heads={self.n_heads} does not divide d_model={self.d_model}"
            )
        return self

    @classmethod
    def of(cls, name: str, d_model: int, n_layers: int, n_heads: int, batch_sequences: int,
           **extra: Any) -> ModelSize:
        """Positional shorthand for the presets."""
        return cls(name=name, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                   batch_sequences=batch_sequences, **extra)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# The OLMo tokenizer that ai2-olmo-eval ships (GPT-NeoX, OLMo/Dolma v1.5): `tokenizer.kind: olmo`.
OLMO_TOKENIZER_FILE = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
OLMO_TOKENIZER_VOCAB = 50_280
# Corpus file formats by suffix (`corpus.kind: auto`).
CORPUS_SUFFIXES = {".txt": "text", ".text": "text", ".md": "text", ".jsonl": "jsonl",
                   ".npy": "numpy", ".bin": "numpy"}


class TokenizerSpec(_Spec):
    """Train a byte-level BPE on the corpus (`bpe`), load a local tokenizer folder or
    tokenizer.json (`path`), or use the OLMo tokenizer shipped in ai2-olmo-eval (`olmo`)."""

    kind: Literal["bpe", "path", "olmo"] = "bpe"
    vocab_size: int = Field(default=4096, ge=260,
                            description="tokens in the tokenizer (bpe: the size to train)")
    path: str | None = None
    model_max_length: int = Field(default=8192, gt=0, description="longest sequence it supports")

    @model_validator(mode="before")
    @classmethod
    def _olmo_vocab(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "olmo" and "vocab_size" not in data:
            return {**data, "vocab_size": OLMO_TOKENIZER_VOCAB}
        return data

    @model_validator(mode="after")
    def _path_given(self) -> TokenizerSpec:
        if self.kind == "path" and not self.path:
            raise ValueError("tokenizer.kind is 'path' but tokenizer.path is missing")
        return self


class CorpusSpec(_Spec):
    """Training data: the bundled Wikipedia summaries, text or JSONL files (tokenized here and
    cached), or olmo-core token files (raw uint16/uint32 ids, memory-mapped where they are).

    `auto` picks the format from each file's suffix. Paths are checked by `check_corpus`, before
    any compute, so a preset may leave them for the user to fill in.
    """

    kind: Literal["wiki-summaries", "text", "jsonl", "numpy", "auto"] = "wiki-summaries"
    paths: list[str] = Field(default_factory=list)
    val_paths: list[str] = Field(
        default_factory=list, description="numpy: held-out token files (default: last of paths)")
    dtype: Literal["uint16", "uint32"] = Field(default="uint32", description="numpy token ids")
    text_field: str = "text"
    val_fraction: float = Field(default=0.02, gt=0, lt=0.5)
    val_max_tokens: int = Field(default=32_768, gt=0, description="held-out tokens scored")

    def file_kind(self) -> str:
        """The format of the files: `kind`, or for `auto` the one their suffixes name."""
        if self.kind != "auto":
            return self.kind
        kinds = set()
        for p in self.paths + self.val_paths:
            kind = CORPUS_SUFFIXES.get(Path(p).suffix.lower())
            if kind is None:
                raise InputError(f"corpus.paths: {p!r} has an unknown format (suffix "
                                 f"{Path(p).suffix or 'none'!r}; known: "
                                 f"{', '.join(CORPUS_SUFFIXES)}; or set corpus.kind)")
            kinds.add(kind)
        if len(kinds) > 1:
            raise InputError(f"corpus.paths: mixes formats {sorted(kinds)}; use one")
        if not kinds:
            raise InputError("corpus.kind is 'auto' but corpus.paths is empty")
        return kinds.pop()


class SlurmSpec(_Spec):
    """How `launcher: slurm` runs each ladder run: one job, torchrun inside, on these resources."""

    partition: str | None = None
    nodes: int = Field(default=1, gt=0)
    gpus_per_node: int = Field(default=0, ge=0, description="0: a CPU job")
    ranks_per_node: int | None = Field(
        default=None, gt=0, description="torchrun processes per node (default: GPUs, or 1)")
    cpus_per_task: int | None = Field(default=None, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)
    timeout_min: int = Field(default=7 * 24 * 60, gt=0)
    max_retries: int = Field(default=3, ge=0, description="resubmissions of a failed run")
    poll_seconds: float = Field(default=10.0, gt=0)
    additional: dict[str, Any] = Field(default_factory=dict,
                                       description="more sbatch options (submitit's names)")

    @property
    def ranks(self) -> int:
        """Data-parallel ranks of one run's job."""
        return self.nodes * (self.ranks_per_node or self.gpus_per_node or 1)


class TargetModel(_Spec):
    """The model the ladder predicts: a size (larger than the ladder's) and a length."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    size: ModelSize
    multiplier: float = Field(gt=0)


class LadderSpec(_Spec):
    """Everything training needs; `plan()` expands it into runs."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    sizes: list[ModelSize] = Field(min_length=1)
    multipliers: list[float] = Field(min_length=1, description="Chinchilla multiples (1xC = 20N)")
    tokens_per_param: float = Field(default=CHINCHILLA_TOKENS_PER_PARAM, gt=0, le=1e4)
    sequence_length: int = Field(gt=0)
    tokenizer: TokenizerSpec = TokenizerSpec()
    corpus: CorpusSpec = CorpusSpec()
    checkpoints_per_run: int = Field(default=5, gt=0,
                                     description="kept, evenly spaced, last included")
    checkpoint_interval: int | None = Field(default=None, gt=0,
                                            description="steps; overrides per_run")
    end_checkpoints: int = Field(
        default=0, ge=0, description="more kept in the last end_fraction of a run's steps")
    end_fraction: float = Field(default=0.05, gt=0, lt=1, description="see end_checkpoints")
    seed: int = 1234
    cpu_threads: int | None = Field(
        default=None, gt=0, description="torch threads while training on CPU (None: torch's)")
    rank_microbatch_sequences: int | None = Field(
        default=None, gt=0, description="per-rank microbatch (None: the rank's whole batch)")
    output_dir: str = "taskladder-out/ladder"
    device: Literal["cpu", "cuda"] = "cpu"
    compile_model: bool = Field(default=False, description="torch.compile (GPU; skipped on CPU)")
    lr_rule: tuple[float, float, float] = Field(
        default=(0.0047, 1.08e8, 4.0), description="peak LR = a * (N / n0)^(-1/3) / div"
    )
    warmup_tokens_per_param: float = Field(
        default=1.0, gt=0, description="warmup = this x N tokens (the paper: N / batch steps)")
    final_lr_fraction: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.1, ge=0)
    target: TargetModel | None = None
    slurm: SlurmSpec = SlurmSpec()

    @model_validator(mode="after")
    def _consistent(self) -> LadderSpec:
        bad = [m for m in self.multipliers if not 0 < m <= MAX_MULTIPLIER]
        if bad:
            raise ValueError(f"multipliers must be in (0, {MAX_MULTIPLIER:g}], got {bad[0]:g}")
        names = [s.name for s in self.sizes]
        if len(set(names)) != len(names):
            raise ValueError(f"sizes: a name is listed twice: {names}")
        if len(set(self.multipliers)) != len(self.multipliers):
            raise ValueError(f"multipliers: a value is listed twice: {self.multipliers}")
        if self.corpus.kind == "numpy" and self.tokenizer.kind == "bpe":
            raise ValueError("corpus.kind 'numpy' holds token ids: give the tokenizer that made "
                             "them (tokenizer.kind 'path' or 'olmo'), not 'bpe'")
        if self.sequence_length > self.tokenizer.model_max_length:
            raise ValueError(
                f"sequence_length={self.sequence_length} is longer than the tokenizer supports "
                f"(tokenizer.model_max_length={self.tokenizer.model_max_length})"
            )
        return self

    # presets -------------------------------------------------------------------------------
    @classmethod
    def paper(cls, **overrides: Any) -> LadderSpec:
        """The paper's GPU ladder: 190M/370M/760M/1B OLMo-2 x 1/2/5/10xC, seq 4096.

        Data is the user's: `tokenizer.path` a local copy of the dolma2 tokenizer and
        `corpus.paths` olmo-core token files (uint32); both are checked before any compute.
        """
        size = partial(ModelSize.of, hidden_size_multiplier=1.5)
        target_n, target_d = TARGETS["7B-4T"]
        return cls._preset(
            dict(
                name="paper",
                sizes=[size("190M", 768, 12, 12, 128), size("370M", 1024, 16, 16, 192),
                       size("760M", 1536, 16, 16, 320), size("1B", 2048, 16, 16, 384)],
                multipliers=[1, 2, 5, 10],
                sequence_length=4096,
                tokenizer=TokenizerSpec(kind="path", path="allenai/dolma2-tokenizer",
                                        vocab_size=100278, model_max_length=8192),
                corpus=CorpusSpec(kind="numpy", dtype="uint32"),  # paths: your token files
                checkpoint_interval=1000,
                output_dir="taskladder-out/paper",
                device="cuda",
                target=TargetModel(
                    name="7B-4T", multiplier=target_d / CHINCHILLA_TOKENS_PER_PARAM / target_n,
                    size=ModelSize(name="7B", d_model=4096, n_layers=32, n_heads=32,
                                   batch_sequences=1024)),
            ),
            overrides,
        )

    @classmethod
    def paper_small(cls, **overrides: Any) -> LadderSpec:
        """The paper's recipe and ratios at four small sizes, trainable on a CPU.

        Every shape is the paper's divided down (`PAPER_SMALL_DIVISORS`: d_model 48/64/96/128,
        layers 3/4/4/4, heads 3/4/4/4, batch 4/6/10/12 sequences of 256); the multipliers
        1/2/5/10 and the target's length are scaled by 0.05 (0.05/0.1/0.25/0.5 xC: 205 to
        4,274 steps), and warmup alike (0.05 N tokens: the paper's 1/20 of a 1xC run); the LR
        rule, AdamW and cosine to 10% are unchanged. A 2,048-token BPE on the bundled
        summaries by default; give `tokenizer` and `corpus` for real data.
        """
        paper = cls.paper()
        return cls._preset(
            dict(
                name="paper-small",
                sizes=[_shrink(s) for s in paper.sizes],
                multipliers=[PAPER_SMALL_LENGTH * m for m in paper.multipliers],
                sequence_length=256,
                tokenizer=TokenizerSpec(kind="bpe", vocab_size=2048, model_max_length=2048),
                checkpoints_per_run=5,
                warmup_tokens_per_param=PAPER_SMALL_LENGTH * paper.warmup_tokens_per_param,
                output_dir="taskladder-out/paper-small",
                target=TargetModel(name="d256-7B4T-shape", size=_shrink(paper.target.size),
                                 multiplier=round(PAPER_SMALL_LENGTH * paper.target.multiplier,
                                                  3)),
            ),
            overrides,
        )

    @classmethod
    def cpu_micro(cls, **overrides: Any) -> LadderSpec:
        """The embedded default's ladder: 4 widths x 3 lengths on 2 CPU cores in minutes.

        One layer, widths 32 / 64 / 96 / 128 (head_dim 32, so vLLM can load the exports; MLP
        1.5x as in the paper's sizes) with a 512-token BPE: N (non-embedding, output head
        included) 32,928 / 98,624 / 197,088 / 328,320, a 10x span mostly in the blocks (at
        2,048 tokens the head was 57-80% of N, and at equal tokens widths 32-96 showed no size
        effect; at 512, widths 32 -> 96 lower the task loss 1-2% at equal tokens,
        docs/benchmarks.md). Four widths, not three: step 1's backtest that holds out the
        largest size then still fits three, and its conformal scores (|ln(predicted /
        measured)| per unit of distance, at most 0.03 on 3 seeds, against 3-4 with three
        widths) give the calibrated loss interval a sane width. The target, width
        160 (492,320), lies 1.5x beyond the ladder, at 0.03xC (295,936 tokens, inside the
        ladder's). Every size takes the same batch (4 sequences of 256) so tokens and optimizer
        steps grow together: at these lengths (0.015 / 0.03 / 0.06 x C, 10-385 steps) the loss
        follows the steps, and a batch that grew with size left the larger sizes fewer steps
        and no better than the smaller ones. Width alone grows N: deeper models learned slower
        per token here. LR by the paper's N^(-1/3) rule: ~0.15 (10-20x it) lowers every
        size's loss but erases the size effect (step 1's size term vanished at both
        vocabularies). Warmup 0.05 N tokens (N tokens would exceed the shortest runs).
        Checkpoints at half way and in the last 4% of each run (inside the 5% of its tokens
        that step 1 of the laws averages). torch's default threads: with one
        (`cpu_threads=1`) the ladder ran ~2x slower on the busy 2-core box.
        """
        size = partial(ModelSize.of, n_layers=1, batch_sequences=4, hidden_size_multiplier=1.5,
                       hidden_size_multiple_of=32)
        return cls._preset(
            dict(
                name="cpu-micro",
                sizes=[size(f"d{w}", w, n_heads=w // 32) for w in (32, 64, 96, 128)],
                multipliers=[0.015, 0.03, 0.06],
                sequence_length=256,
                tokenizer=TokenizerSpec(kind="bpe", vocab_size=512, model_max_length=2048),
                checkpoints_per_run=2,
                end_checkpoints=1,
                end_fraction=0.04,
                warmup_tokens_per_param=0.05,
                output_dir="taskladder-out/cpu-micro",
                target=TargetModel(name="d160-0.03xC", multiplier=0.03,
                                   size=size("d160", 160, n_heads=5)),
            ),
            overrides,
        )

    @classmethod
    def cpu_micro_target(cls, **overrides: Any) -> LadderSpec:
        """The cpu-micro ladder's target as a one-run spec (same data, bigger and longer)."""
        return cls.cpu_micro().target_ladder().model_copy(update=overrides)

    @classmethod
    def _preset(cls, values: dict[str, Any], overrides: dict[str, Any]) -> LadderSpec:
        return validate_ladder_spec({**_dump(values), **overrides}, "preset")

    # derived -------------------------------------------------------------------------------
    def target_ladder(self) -> LadderSpec:
        """A spec that trains just this ladder's target (same corpus, tokenizer and folder)."""
        if self.target is None:
            raise InputError(f"spec {self.name}: has no target to train (set target)")
        data = self.model_dump(mode="python")
        data.update(name=f"{self.name}-target", sizes=[data["target"]["size"]],
                    multipliers=[self.target.multiplier], target=None)
        return validate_ladder_spec(data, f"spec {self.name} target")

    @property
    def vocab_size(self) -> int:
        """The model's (padded) vocabulary: the tokenizer's size rounded up to 128."""
        return 128 * math.ceil(self.tokenizer.vocab_size / 128)

    def out_dir(self) -> Path:
        return Path(os.path.expanduser(self.output_dir)).resolve()

    def plan(self) -> list[RunPlan]:
        """Every run of the ladder, in training order (small and short first)."""
        return [self.run_plan(size, m) for size in self.sizes for m in sorted(self.multipliers)]

    def run_plan(self, size: ModelSize, multiplier: float) -> RunPlan:
        from taskladder.training.model import model_config  # olmo-core import is heavy

        cfg = model_config(size, self.vocab_size)
        n = float(cfg.num_non_embedding_params)
        batch_tokens = size.batch_sequences * self.sequence_length
        steps = max(1, math.ceil(multiplier * self.tokens_per_param * n / batch_tokens))
        a, n0, div = self.lr_rule
        interval = self.checkpoint_interval or max(1, math.ceil(steps / self.checkpoints_per_run))
        ckpts = sorted({*range(interval, steps + 1, interval), steps, *self._end_steps(steps)})
        flops = train_flops(n, steps * batch_tokens)
        return RunPlan(
            run=f"{size.name}-{_fmt_mult(multiplier)}xC", size=size.name, multiplier=multiplier,
            N=n,
            batch_sequences=size.batch_sequences, batch_tokens=batch_tokens,
            lr=a * (n / n0) ** (-1 / 3) / div,
            warmup_steps=max(1, round(self.warmup_tokens_per_param * n / batch_tokens)),
            steps=steps, tokens=steps * batch_tokens, checkpoint_steps=ckpts, flops=flops,
            est_seconds=flops / (H100_BF16_PEAK_FLOPS * GPU_MFU_ESTIMATE
                                 if self.device == "cuda" else CPU_FLOPS_ESTIMATE),
            device=self.device,
        )

    def _end_steps(self, steps: int) -> set[int]:
        """`end_checkpoints` steps spread over the run's last `end_fraction` (what step 1 of
        the laws averages), none before it: a run too short for them keeps fewer."""
        k, span = self.end_checkpoints, self.end_fraction * steps
        return {steps - min(math.floor(i * span / k), math.floor(span)) for i in range(1, k + 1)}

    def describe_plan(self) -> str:
        """The plan as a table (what `--dry-run` prints)."""
        plans = self.plan()
        unit = "GPU h" if self.device == "cuda" else "CPU s"
        scale = 3600 if self.device == "cuda" else 1
        head = (f"{'run':<14}{'N':>14}{'tokens':>17}{'batch':>7}{'lr':>10}{'warmup':>8}"
                f"{'steps':>9}{'ckpts':>7}{'FLOPs':>11}{unit:>10}")
        lines = [f"ladder {self.name}: {len(plans)} runs, seq {self.sequence_length}, "
                 f"vocab {self.tokenizer.vocab_size} (model {self.vocab_size}), "
                 f"N = non-embedding params incl. output head", head]
        for p in plans:
            lines.append(
                f"{p.run:<14}{p.N:>14,.0f}{p.tokens:>17,}{p.batch_sequences:>7}{p.lr:>10.2e}"
                f"{p.warmup_steps:>8}{p.steps:>9,}{len(p.checkpoint_steps):>7}{p.flops:>11.2e}"
                f"{p.est_seconds / scale:>10.1f}")
        total = sum(p.est_seconds for p in plans) / scale
        basis = "H100 at 40% MFU" if scale > 1 else "before measuring"
        lines.append(f"total: {sum(p.flops for p in plans):.3e} FLOPs (6ND), "
                     f"~{total:,.1f} {unit} (estimate; {basis})")
        if self.target is not None:
            t = self.target_ladder().plan()[0]
            share = sum(p.flops for p in plans) / t.flops
            lines.append(f"target {self.target.name}: N={t.N:,.0f} D={t.tokens:,} "
                         f"FLOPs {t.flops:.3e}; ladder = {100 * share:.1f}% of it")
        return "\n".join(lines)


# paper-small: the paper's shapes divided by these, its lengths multiplied by this
PAPER_SMALL_DIVISORS = {"d_model": 16, "n_layers": 4, "n_heads": 4, "batch_sequences": 32}
PAPER_SMALL_LENGTH = 0.05


def _shrink(size: ModelSize) -> ModelSize:
    small = {k: getattr(size, k) // d for k, d in PAPER_SMALL_DIVISORS.items()}
    return size.model_copy(update={**small, "name": f"d{small['d_model']}",
                                   "hidden_size_multiple_of": 16})


@dataclass(frozen=True)
class RunPlan:
    """One run of the ladder with every number training uses."""

    run: str
    size: str
    multiplier: float
    N: float
    batch_sequences: int
    batch_tokens: int
    lr: float
    warmup_steps: int
    steps: int
    tokens: int
    checkpoint_steps: list[int]
    flops: float
    est_seconds: float
    device: str


def _fmt_mult(m: float) -> str:
    return f"{m:g}"


def _dump(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.model_dump(mode="python") if isinstance(v, BaseModel)
            else [x.model_dump(mode="python") if isinstance(x, BaseModel) else x for x in v]
            if isinstance(v, list) else v for k, v in values.items()}


# Training presets end in -ladder (or -target), apart from the pipeline specs that use them.
PRESETS = {"paper-ladder": LadderSpec.paper, "paper-small-ladder": LadderSpec.paper_small,
           "cpu-micro-ladder": LadderSpec.cpu_micro,
           "cpu-micro-target": LadderSpec.cpu_micro_target}
# Their names until 2026-12-03, shared with the pipeline specs: one release, with a notice.
OLD_PRESETS = {"paper": "paper-ladder", "paper-small": "paper-small-ladder",
               "cpu-micro": "cpu-micro-ladder"}


def _current_preset(name: str, where: str) -> str | None:
    """The current preset name for `name` (an old one with a notice), or None."""
    if name in OLD_PRESETS:
        deprecated(f"{where} {name!r}", repr(OLD_PRESETS[name]))
        return OLD_PRESETS[name]
    return name if name in PRESETS else None


def validate_ladder_spec(data: dict[str, Any], where: str) -> LadderSpec:
    """A LadderSpec from plain data; the first problem becomes one InputError line."""
    return validate(LadderSpec, data, where)


def load_ladder_spec(source: str | dict[str, Any], overrides: dict[str, Any] | None = None,
                     ) -> LadderSpec:
    """A preset name (`cpu-micro-ladder`, `paper-ladder`, ...), a YAML/TOML/JSON file or a dict.

    `overrides` replace top-level fields (e.g. `output_dir`); relative corpus and tokenizer
    paths in a file are taken relative to the file.
    """
    overrides = dict(overrides or {})
    if isinstance(source, dict):
        return validate_ladder_spec({**source, **overrides}, "ladder spec")
    preset = _current_preset(source, "training preset")
    if preset is not None:
        base = PRESETS[preset]().model_dump(mode="python")
        return validate_ladder_spec({**base, **overrides}, f"preset {preset}")
    path = Path(os.path.expanduser(source))
    if not path.is_file():
        raise InputError(f"ladder spec {source!r}: no such file or preset ({', '.join(PRESETS)})")
    data = read_mapping(path)
    if "preset" in data:  # a file may start from a preset and change fields
        name = data.pop("preset")
        preset = _current_preset(name, f"{path}: preset")
        if preset is None:
            raise InputError(f"{path}: preset {name!r} unknown ({', '.join(PRESETS)})")
        data = {**PRESETS[preset]().model_dump(mode="python"), **data}
    data = _relative_paths(data, path.parent)
    return validate_ladder_spec({**data, **overrides}, str(path))


def _relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Corpus and output paths (and a tokenizer path that is a local file) by the one rule of
    `common.specfile.resolve_path`: relative to the spec file."""
    def fix(p: str) -> str:
        return str(resolve_path(p, base))

    data = dict(data)
    corpus = dict(data.get("corpus") or {})
    if corpus.get("paths"):
        corpus["paths"] = [fix(p) for p in corpus["paths"]]
        data["corpus"] = corpus
    tok = dict(data.get("tokenizer") or {})
    if tok.get("path") and (base / tok["path"]).exists():
        tok["path"] = fix(tok["path"])
        data["tokenizer"] = tok
    if "output_dir" in data:
        data["output_dir"] = fix(data["output_dir"])
    return data
