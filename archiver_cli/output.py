"""Terminal output: JSON, plain tables, and a small progress bar on stderr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["PROGRESS_THRESHOLD", "Progress", "print_json", "print_table"]

PROGRESS_THRESHOLD = 20
"""A progress bar is shown (on a terminal) from this many items on."""


def print_json(value: Any, stream: TextIO, *, indent: int | None = 2) -> None:
    """One JSON document; indent=None prints it on one line (JSON lines)."""
    separators = None if indent else (",", ":")
    stream.write(json.dumps(value, indent=indent, separators=separators, ensure_ascii=False) + "\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO, *, max_width: int = 60) -> None:
    """Left-aligned columns as `az -o table` prints them: a header, a dashed rule, one line per row."""
    cells = [[_cell(value, max_width) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    lines = [headers, ["-" * width for width in widths], *cells]
    for line in lines:
        stream.write("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any, max_width: int) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


class Progress:
    """`label [#####.....] 5/10` redrawn in place on stderr; silent when disabled."""

    def __init__(self, total: int, label: str, stream: TextIO, enabled: bool | None = None, width: int = 30) -> None:
        self.total = max(total, 0)
        self.done = 0
        self._label = label
        self._stream = stream
        self._width = width
        if enabled is None:
            enabled = self.total >= PROGRESS_THRESHOLD and _is_terminal(stream)
        self.enabled = enabled
        self._draw()

    def advance(self, count: int = 1) -> None:
        """Count `count` more items done."""
        self.done += count
        self._draw()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self._stream.write("\n")
            self._stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _draw(self) -> None:
        if not self.enabled:
            return
        total = max(self.total, self.done, 1)
        filled = self._width * min(self.done, total) // total
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self.done}/{max(self.total, self.done)}")
        self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
