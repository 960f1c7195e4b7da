"""What the user sees on the terminal: our own lines and progress bars, not the engine's.

vLLM, torch and xgrammar print warnings (missing libtcmalloc/libiomp, Triton, model runner
choices) from Python and C++ alike on every run. Only redirecting file descriptors 1 and 2
catches all of it, engine child processes included, so while a command runs they point at
a log file and our output goes to a copy of the terminal's stderr taken before. Errors
still surface: the command prints them after the redirect ends, naming the log.
"""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

# (step name, documents finished): what a progress listener sees, in order.
Listener = Callable[[str, int], None]


@contextmanager
def engine_output_to(log: Path | None) -> Iterator[TextIO]:
    """Send fds 1 and 2 to `log` (appending) and yield a stream to the real terminal;
    with `log` None (--verbose) nothing is redirected."""
    if log is None:
        yield sys.stderr
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        with log.open("ab") as handle:
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
            yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        console.close()


class StepProgress:
    """One bar per step of the flow: `read` counts documents, each later step the plans
    (a document's queries to ask) done with it; a document's plan count is added to the later
    totals when its batch is planned (`planned`).

    A plan rejected at one step is also done with every later one, so the later bars end at
    the same total and their rate and ETA stay honest. Bars move as the engine finishes
    requests (see `Generator.generate`'s `on_done`), not once per batch.
    """

    def __init__(
        self,
        steps: list[str],
        total: int | None,
        console: TextIO | None,
        listener: Listener | None = None,
    ) -> None:
        self.steps = steps
        self.listener = listener
        labels = {name: step_label(name, i) for i, name in enumerate(steps)}
        if console is not None:
            print(
                "progress: documents read, then plans (queries asked of a document) done "
                "with each later step"
                + "".join(
                    f"; {label} = {name.replace('/', ', ')}"
                    for name, label in labels.items()
                    if label != name
                ),
                file=console,
            )
        self.bars = {
            name: tqdm(
                desc=f"{labels[name]:>8}",
                unit="doc" if i == 0 else "plan",
                total=total,
                position=i,
                file=console,
                disable=console is None,
                dynamic_ncols=True,
                smoothing=0.1,
            )
            for i, name in enumerate(steps)
        }

    def advance(self, step: str, n: int) -> None:
        """`n` more documents are done with `step`."""
        if n:
            self.bars[step].update(n)
            if self.listener is not None:
                self.listener(step, n)

    def planned(self, documents: int, plans: int) -> None:
        """`documents` were planned into `plans`: every step after `read` counts plans, so
        its total grows by the difference (the total started as the document count)."""
        for step in self.steps[1:]:
            bar = self.bars[step]
            if bar.total is not None and plans != documents:
                bar.total += plans - documents
                bar.refresh()

    def covered(self, documents: int) -> None:
        """`documents` (skips included) were done by the earlier part of a run resumed from
        its checkpoint: no bar counts them, so rates and ETAs are this part's."""
        for bar in self.bars.values():
            if bar.total is not None:
                bar.total -= documents
                bar.refresh()

    def dropped(self, step: str, n: int) -> None:
        """`n` documents left the flow at `step`: they are done with every later step."""
        for later in self.steps[self.steps.index(step) + 1 :]:
            self.advance(later, n)

    def advancer(self, step: str) -> Callable[[int], None]:
        """A callback that advances `step` (for the engine's completion events)."""
        return lambda n: self.advance(step, n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def step_label(name: str, position: int) -> str:
    """A bar label that fits: a generation step shared by many families' stages
    ("config/titles/...") is "stage N" (N its position after `read`), its stage names
    listed once in the header line."""
    return name if name.count("/") <= 1 else f"stage {position}"
