"""The job's configuration: the YAML sections as pydantic models, and the errors a user can fix."""
