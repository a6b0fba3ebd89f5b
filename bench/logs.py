"""Logging as the Functions Python worker sets it up: root at INFO, a handler that formats every record.

The worker's AsyncLoggingHandler formats each record and hands it to the host over gRPC; this one
formats it and drops it, so every client pays what a log line costs under the host, no more.
"""

from __future__ import annotations

import logging

__all__ = ["FormattingHandler", "host_logging"]


class FormattingHandler(logging.Handler):
    """Formats each record (as the worker's handler does), then discards it."""

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.records += 1


def host_logging() -> FormattingHandler:
    """Root logger at INFO with one FormattingHandler (the worker's default, PYTHON_ENABLE_DEBUG_LOGGING off)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = FormattingHandler()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler
