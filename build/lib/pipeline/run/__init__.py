"""A job's life: lock, resume or new version, the executor's run, then publish."""
