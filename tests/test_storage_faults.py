"""What a production run's storage survives: any Unicode in the request cache, torn or
corrupt cache lines, and many runs starting on one dataset at once (the lock the kernel
holds for the run's life)."""

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from pipeline.config.errors import DatasetBusy
from pipeline.dataset.lock import LOCK, dataset_lock
from pipeline.generation.backends.base import Result
from pipeline.generation.cache import RequestCache

# Every character str.splitlines() breaks a line on, besides \n and \r.
LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def result(text: str) -> Result:
    return Result(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=4)


def test_any_unicode_text_round_trips_through_the_cache(tmp_path: Path) -> None:
    texts = [f"line one{c}line two" for c in LINE_BREAKS] + ["tab\there\r\nand crlf", "é😀"]
    cache = RequestCache(tmp_path)
    cache.add([f"k{i}" for i in range(len(texts))], [result(t) for t in texts])
    again = RequestCache(tmp_path)
    assert [r.text for r in again.read([f"k{i}" for i in range(len(texts))])] == texts


def test_a_torn_or_corrupt_line_costs_only_that_line(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    cache.add(["a", "b", "c"], [result("first"), result("second\u2028"), result("third")])
    cache.add(["d", "e"], [result("fourth"), result("fifth")])
    first, second = sorted(tmp_path.glob("seg-*.jsonl"))
    lines = first.read_bytes().split(b"\n")
    lines[1] = b'{"key": "b", "text": "sec'  # corrupt in the middle of a segment
    first.write_bytes(b"\n".join(lines))
    data = second.read_bytes()
    second.write_bytes(data[: data.rindex(b"fifth")])  # torn at the end (a disk filled up)
    again = RequestCache(tmp_path)
    assert sorted(again.keys()) == ["a", "c", "d"]
    assert again.dropped == 2
    # The lost lines are generated again and stored in a new segment, not over the old.
    again.add(["b", "e"], [result("second"), result("fifth")])
    assert sorted(RequestCache(tmp_path).keys()) == ["a", "b", "c", "d", "e"]


def test_a_lock_is_released_by_the_kernel_when_its_holder_dies(tmp_path: Path) -> None:
    """A run killed with SIGKILL (in a container with another hostname, or the same pid in a
    fresh pid namespace) leaves a lock file whose owner details mean nothing: the next run
    takes the dataset, because the kernel released the lock with the process."""
    root = tmp_path / "ds"
    root.mkdir()
    # An owner record no live check could disprove: this host's name, a live pid (ours).
    (root / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": "another-container"}))
    with dataset_lock(root):
        assert (root / LOCK).exists()


def test_a_live_holder_keeps_the_dataset_even_with_a_half_written_owner(tmp_path: Path) -> None:
    """A second starter that reads the owner record mid-write (or finds it torn) must not
    take that for a stale lock: only the kernel's lock decides."""
    from tests.test_resume import HOLD_LOCK

    root = tmp_path / "ds"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        (root / LOCK).write_text('{"pid": 12')  # the record as a starter may read it
        with pytest.raises(DatasetBusy, match="another run"), dataset_lock(root):
            pass
    finally:
        holder.kill()
        holder.wait()
    with dataset_lock(root):  # its holder died: the kernel let go
        pass


def test_an_open_cache_holds_where_results_lie_not_the_results(tmp_path: Path) -> None:
    """A long run's cache grows on disk: opening (or writing to) a cache of many long
    results allocates a small fraction of their text, and each result reads back whole,
    also one a peer writer stored after the cache was opened."""
    texts = [f"{i} " + "é" * 2000 for i in range(500)]
    keys = [f"{i:064x}" for i in range(len(texts))]
    RequestCache(tmp_path).add(keys[:250], [result(t) for t in texts[:250]])
    tracemalloc.start()
    cache = RequestCache(tmp_path)
    cache.add(keys[250:400], [result(t) for t in texts[250:400]])
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < sum(len(t.encode()) for t in texts[:400]) / 20
    RequestCache(tmp_path, writer="peer").add(keys[400:], [result(t) for t in texts[400:]])
    assert keys[-1] not in cache
    cache.refresh()
    assert len(cache) == len(keys)
    wanted = keys[::-7]  # across segments and writers, out of file order
    assert cache.read(wanted) == [result(texts[keys.index(k)]) for k in wanted]
