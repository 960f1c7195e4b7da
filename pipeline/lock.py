"""One run per dataset at a time: a lock file in the dataset folder.

The lock holds the owner's pid and host. A second run finds it and stops with
`DatasetBusy`; a lock whose owner is gone (killed, machine rebooted) is stale and taken
over, so a crashed cron run never blocks the next one.
"""

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import DatasetBusy

LOCK = ".lock"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # half-written by a killed run: stale


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Hold `root/.lock` for the duration; refuse if a live run holds it. Folders made for
    the lock are removed again if the run leaves them empty (bad input found after the lock
    was taken writes nothing)."""
    made = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            # Another host's process cannot be checked from here: it counts as live.
            live = owner is not None and (
                owner.get("host") != me["host"] or _alive(int(owner.get("pid", 0)))
            )
            if live and owner is not None:
                raise DatasetBusy(
                    f"another run (pid {owner['pid']}) is writing {root}; "
                    f"try again when it ends (or remove {path} if it is not running)"
                ) from None
            path.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote something
                break
