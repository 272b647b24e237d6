"""Progress on the terminal: stage notes, warnings and bars with an estimate.

Everything here writes to stderr, so stdout stays for results (rig prints the run
directory as the last line of stdout). A `Reporter(enabled=False)` keeps warnings but
draws no bars, for tests and non-interactive use.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Task:
    """One bar: advance it as work completes; the total may be an estimate."""

    def __init__(self, progress: Progress | None, task_id: TaskID | None, total: float | None) -> None:
        self._progress = progress
        self._task_id = task_id
        self.total = total
        self.completed = 0.0

    def advance(self, amount: float = 1.0) -> None:
        self.completed += amount
        if self.total is not None and self.completed > self.total:
            # The estimate was low: grow it so the bar keeps moving instead of sitting full.
            self.total = self.completed * 1.05
            self._update(total=self.total)
        self._update(completed=self.completed)

    def finish(self) -> None:
        """The work is done: the bar ends full, whatever the estimate was."""
        self.total = self.completed
        self._update(total=self.completed, completed=self.completed)

    def describe(self, text: str) -> None:
        self._update(description=text)

    def _update(self, **fields: object) -> None:
        if self._progress is not None and self._task_id is not None:
            self._progress.update(self._task_id, **fields)  # type: ignore[arg-type]


@dataclass
class Reporter:
    """Stage notes, warnings and progress bars on stderr."""

    enabled: bool = True
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    warnings: list[str] = field(default_factory=list)

    def step(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[bold]rig:[/bold] {message}", markup=True, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        # Warnings always reach the user, bars or not: they explain a surprising result.
        print(f"rig: warning: {message}", file=sys.stderr)

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        """A bar with elapsed and remaining time; a spinner when `total` is unknown."""
        if not self.enabled or not self.console.is_terminal:
            started = time.monotonic()
            if self.enabled:
                self.step(f"{description} ...")
            yield Task(None, None, total)
            if self.enabled:
                self.step(f"{description}: done in {time.monotonic() - started:.0f} s")
            return
        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total)
            yield Task(progress, task_id, total)


def quiet() -> Reporter:
    return Reporter(enabled=False)
