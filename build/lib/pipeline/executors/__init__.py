"""What drives a job's steps: `local` streams batches through them in this process."""
