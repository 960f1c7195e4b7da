"""Dedup of queries (exact, MinHash-LSH near-duplicate, embedding-semantic) and of input
documents, with the kept queries saved in each version so later runs dedup against them."""
