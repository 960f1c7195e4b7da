"""Plan and generate: each document's plan, the family's stages, the request cache and the
backends."""
