"""Terminal output: JSON, tables and progress; rich draws them on a terminal, plain lines go to a pipe or a file.

rich is imported only when something is drawn on a terminal, so JSON output and piped commands do not pay
its import time. Every cell is untrusted text (run properties, outcome files, dead letters): control
characters and escape sequences are dropped, and rich never reads it as markup.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["PROGRESS_THRESHOLD", "Progress", "clean", "print_json", "print_table"]

PROGRESS_THRESHOLD = 20
"""Progress is shown (on a terminal) from this many items on."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_REFRESH_SECONDS = 0.1
_PLAIN_STEPS = 10
"""Piped progress prints a line at every tenth of the total, and at the end."""
_PLAIN_COUNT_STEP = 1000
"""Piped progress of an unknown total (a listing) prints a line every this many items, and at the end."""


def print_json(value: Any, stream: TextIO, *, indent: int | None = 2) -> None:
    """One JSON document; indent=None prints it on one line (JSON lines)."""
    separators = None if indent else (",", ":")
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)
    if not _encodable(text):  # a lone surrogate cannot be written as UTF-8: keep it as its JSON escape
        text = json.dumps(value, indent=indent, separators=separators)
    stream.write(text + "\n")


def clean(value: Any, max_width: int | None = None) -> str:
    """A value as one printable line: no control characters or lone surrogates, cut to `max_width` with an ellipsis."""
    text = "" if value is None else str(value)
    text = " ".join(_CONTROL.sub(" ", text).split())
    if not _encodable(text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text if max_width is None or len(text) <= max_width else text[: max_width - 1] + "…"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO, *, max_width: int = 60) -> None:
    """A table: rich's on a terminal; piped, left-aligned columns as `az -o table` prints them."""
    cells = [[clean(value, max_width) for value in row] for row in rows]
    if _is_terminal(stream):
        _rich_table(headers, cells, stream)
        return
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    for line in [list(headers), ["-" * width for width in widths], *cells]:
        stream.write("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() + "\n")


def _rich_table(headers: Sequence[str], cells: list[list[str]], stream: TextIO) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # Text: a cell is never markup
    Console(file=stream, highlight=False).print(table)


class Progress:
    """Count, rate and ETA of a long task on stderr: rich's bar on a terminal, a plain line per tenth otherwise.

    A total of None is a count without an end yet (a listing): its bar shows the count and rate, and piped
    it prints a line every _PLAIN_COUNT_STEP items and one when closed.
    """

    def __init__(self, total: int | None, label: str, stream: TextIO, enabled: bool | None = None) -> None:
        self.total = None if total is None else max(total, 0)
        self.done = 0
        self._label = clean(label)
        self._stream = stream
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._step = 0
        terminal = _is_terminal(stream)
        big = self.total is None or self.total >= PROGRESS_THRESHOLD
        self.enabled = big and terminal if enabled is None else enabled
        self._bar: Any = None
        if self.enabled and terminal:
            self._bar, self._task = _rich_progress(self._label, self.total, stream)

    def advance(self, count: int = 1) -> None:
        """Count `count` more items done."""
        self.done += count
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.advance(self._task, count)
            now = time.monotonic()
            if now - self._drawn_at >= _REFRESH_SECONDS or (self.total is not None and self.done >= self.total):
                self._drawn_at = now
                self._bar.refresh()
            return
        if self.total is None:
            step = self.done // _PLAIN_COUNT_STEP
            if step > self._step:
                self._step = step
                self._plain_line()
            return
        step = _PLAIN_STEPS * self.done // max(self.total, 1)
        if step > self._step or self.done >= self.total:
            self._step = step
            self._plain_line()

    def close(self) -> None:
        """Draw the final state and end the bar's line."""
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
            self._bar = None
        elif self.enabled and self.total is None:
            self._plain_line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _plain_line(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            self._stream.write(f"{self._label}: {self.done} ({rate:.1f}/s)\n")
            self._stream.flush()
            return
        left = max(self.total - self.done, 0)
        eta = f", ETA {left / rate:.0f} s" if left and rate else ""
        self._stream.write(f"{self._label}: {self.done}/{max(self.total, self.done)} ({rate:.1f}/s{eta})\n")
        self._stream.flush()


def _rich_progress(label: str, total: int | None, stream: TextIO) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second."""

        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f}/s" if task.speed else "–/s")

    bar = RichProgress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), RateColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(file=stream, highlight=False), auto_refresh=False,
    )
    bar.start()
    return bar, bar.add_task(label, total=total)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
