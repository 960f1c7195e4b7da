"""Hard-negative mining from the job's corpus embeddings."""
