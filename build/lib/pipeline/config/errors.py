"""User-facing errors.

Anything the user can fix (a bad config, a missing file, a corrupt corpus) is raised as
`UserError`; the CLI prints its message on one line and exits non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2


class DatasetBusy(UserError):
    """Another run holds the dataset's lock: exit code 3, so a cron wrapper can tell a
    skipped run from a failed one."""

    exit_code = 3


class GenerationFailed(UserError):
    """Too many of a run's documents failed to generate (after the backend's retries): the
    version is left unfinished and resumable, exit code 4, so a cron wrapper can tell it
    from bad input (2) and a busy dataset (3)."""

    exit_code = 4


class NothingToDo(Exception):
    """The job's newest version is already complete for this config and corpus: the run
    generates nothing and exits 0 with this message."""
