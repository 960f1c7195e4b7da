"""Personas: the library a job draws from and the per-document retrieval of candidates."""
