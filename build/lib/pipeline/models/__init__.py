"""Models that can be had offline: a tiny random Qwen3 for tests and a small demo model."""
