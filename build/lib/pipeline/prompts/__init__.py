"""Prompts: the task-family library, its linter and the preview of rendered requests."""
