"""Embedding models: the model wrapper, the loss, the trainer, inference and evaluation."""
