"""The job's corpus, embedded once: consistency and round-trip filters, semantic dedup and
hard-negative mining all score queries against it."""
