"""Ladder training with olmo-core: specs, corpus, train/resume, Hugging Face export."""
