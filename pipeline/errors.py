"""User-facing errors.

Anything the user can fix (a bad config, a missing file, a corrupt corpus) is raised as
`UserError`; the CLI prints its message on one line and exits non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""
