"""Data the project's own examples and tests need, shipped with the package."""

from pathlib import Path

# The paper's released ladder (allenai/OLMo-ladder `data/ladder-runs`, Apache-2.0).
PAPER_LADDER_DIR = Path(__file__).resolve().parent / "olmo-ladder" / "ladder-runs"
