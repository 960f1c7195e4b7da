"""A dataset version on disk: records and schemas, shards, manifest, card, lock and refresh
state."""
