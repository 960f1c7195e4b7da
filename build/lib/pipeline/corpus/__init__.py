"""The corpus: reading it, document ids and languages, and the embedded corpus index."""
