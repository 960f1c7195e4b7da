"""embsynth: synthetic training data for text-embedding models (Qwen3-Embedding recipe)."""

__version__ = "0.1.0"
