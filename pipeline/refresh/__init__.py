"""Scheduled refresh: new versions from only the documents that are new or changed."""
