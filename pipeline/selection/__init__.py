"""Choosing the model `embsynth train` saves: candidates measured on a held-out split of
the user's own data, the base model kept when none beats it."""
