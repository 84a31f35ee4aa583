"""The progress bar of a run: one look for every job and training stage.

The bar appears at the engine's first report, not when it is created: a job that stops while it is
being built (a config error) prints its one `error:` line and no empty bar.
"""

from __future__ import annotations

from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class RunProgress:
    """A rich progress bar, shown from its first update (`with RunProgress(console, enabled) as p:`)."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                            console=console or Console(stderr=True), disable=not enabled)
        self._started = False

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self.bar.stop()

    def add(self, label: str, total: float | None = None) -> TaskID:
        return self.bar.add_task(label, total=total, stats="")

    def update(self, task: TaskID, **fields: Any) -> None:
        if not self._started:
            self.bar.start()
            self._started = True
        self.bar.update(task, **fields)

    def advance(self, task: TaskID) -> None:
        self.update(task, advance=1)

    def engine(self, label: str) -> Callable[[Any], None]:
        """An engine's `on_progress` callback: questions done of total, calls, cache hits, tokens."""
        task = self.add(label)

        def on_progress(engine: Any) -> None:
            s = engine.stats
            self.update(task, total=engine.total, completed=engine.done,
                        stats=f"calls {s.calls} cached {s.cache_hits} tokens out {s.output_tokens}")

        return on_progress
