"""Quality filters after the query stage: length, language, heuristics, and the embedding
checks (consistency with the positive, round trip through the whole corpus)."""
