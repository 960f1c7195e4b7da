"""Generation backends: requests in, results out, in order, with per-request errors as values."""
