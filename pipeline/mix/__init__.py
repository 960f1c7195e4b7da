"""The mix: what share of pairs the config asked for per task, language and difficulty, and
what the kept pairs achieved."""
