"""taskladder: predict a large model's downstream accuracy from a ladder of small ones."""

__version__ = "0.1.0"
