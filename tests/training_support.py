"""Tiny training specs shared by the training tests: one d32 model, 4 x 64 tokens a step."""

from __future__ import annotations

from pathlib import Path

import yaml

from taskladder.harness_ext.shards import RENDEZVOUS_ENV
from taskladder.training.corpus import read_documents
from taskladder.training.spec import CorpusSpec, load_ladder_spec

# What torchrun or an in-process olmo-core run leaves in os.environ; a fresh process group
# must not inherit it (the list evaluation workers drop too).
DIST_VARS = set(RENDEZVOUS_ENV)


def corpus_file(root: Path, docs: int = 300) -> Path:
    """The first `docs` bundled Wikipedia summaries as a text corpus (written once)."""
    path = root / "corpus.txt"
    if not path.exists():
        path.write_text("\n\n".join(read_documents(CorpusSpec())[:docs]))
    return path


def tiny_spec(root: Path, name: str, steps: int, checkpoints: int,
              multipliers: tuple[float, ...] = (1.0,), **extra) -> Path:
    """A spec file whose 1xC run (d32, 1 layer, 4 x 64 tokens a step) trains exactly `steps`."""
    data = {"name": name, "sizes": [{"name": "t", "d_model": 32, "n_layers": 1, "n_heads": 1,
                                     "hidden_size_multiple_of": 32, "batch_sequences": 4}],
            "multipliers": list(multipliers), "sequence_length": 64,
            "checkpoints_per_run": checkpoints,
            "tokenizer": {"kind": "bpe", "vocab_size": 512, "model_max_length": 512},
            "corpus": {"kind": "text", "paths": [str(corpus_file(root))],
                       "val_fraction": 0.05, "val_max_tokens": 2048},
            "warmup_tokens_per_param": 0.01, "output_dir": str(root / name), **extra}
    n = load_ladder_spec(data).plan()[0].N
    data["tokens_per_param"] = (steps - 0.5) * 4 * 64 / n
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_ladder_spec(str(path)).plan()[-1].steps == steps
    return path


# The whole pipeline on a tiny ladder (two 1-layer sizes, three lengths, PIQA on 6 questions);
# `.format(out=...)` names its output folder.
TINY = """
name: tiny
ladder:
  train: cpu-micro-ladder
  overrides:
    sizes:
      - {{name: d32, d_model: 32, n_layers: 1, n_heads: 1, hidden_size_multiple_of: 32,
         batch_sequences: 8}}
      - {{name: d64, d_model: 64, n_layers: 1, n_heads: 2, hidden_size_multiple_of: 32,
         batch_sequences: 8}}
    multipliers: [0.01, 0.02, 0.04]
    checkpoints_per_run: 2
    end_checkpoints: 0
    target: {{name: d96-0.02xC, multiplier: 0.02,
             size: {{name: d96, d_model: 96, n_layers: 1, n_heads: 3, hidden_size_multiple_of: 32,
                    batch_sequences: 8}}}}
evaluate: {{tasks: [piqa], limit: 6}}
fit: {{method: paper}}
target: {{spec: ladder, train: true}}  # named d96-0.02xC, as the ladder's target
gate: {{enabled: true, tolerance: 10}}
output_dir: {out}
"""
