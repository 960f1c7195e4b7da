"""One run per dataset at a time: an exclusive `flock` on the dataset's lock file, held
for the run's life.

The kernel releases the lock when its holder's process dies, however it dies (`kill -9`,
an OOM kill, a container torn down), so there is no stale lock to detect and nothing a
second starter can misread: the pid and host written into the file are information for a
person, never a test of liveness (a pid means nothing across pid namespaces, a hostname
nothing across containers). A second run finds the lock held and stops with `DatasetBusy`.
"""

import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.config.errors import DatasetBusy
from pipeline.dataset.manifest import now

LOCK = ".lock"


def _holder(path: Path) -> str:
    """Who holds the lock, as far as its file says (it may be mid-write)."""
    try:
        owner = json.loads(path.read_text())
        return f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "details not written yet"


def _take(path: Path) -> int | None:
    """An open descriptor on `path` holding its exclusive lock, or None when another
    process holds it. A file unlinked by its releasing holder between our open and our
    flock is not the lock any more: open the new one and try again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Hold `root/.lock` for the duration; refuse if a live run holds it. Folders made for
    the lock are removed again if the run leaves them empty (bad input found after the lock
    was taken writes nothing)."""
    made = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    fd = _take(path)
    if fd is None:
        raise DatasetBusy(
            f"another run ({_holder(path)}) is writing {root}; try again when it ends"
        )
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # before the release: a waiter then opens a new file
        os.close(fd)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote something
                break
