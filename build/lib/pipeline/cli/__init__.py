"""The `embsynth` command line."""
