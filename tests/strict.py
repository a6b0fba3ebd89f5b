"""A strict JSON reader for what the app writes: RFC 8259 numbers only, and text that UTF-8 can carry.

Written independently of shared.jsontext, so a test that reads the app's output with it checks the
contract (§2, last rule), not the app's own encoder against itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["strict_json", "strict_lines"]


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def _walk_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError: a lone surrogate
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_json(data: bytes | str) -> Any:
    """Decode UTF-8 JSON, failing on NaN/Infinity, numbers that overflow a double, and lone surrogates."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data

    def finite(number: str) -> float:
        value = float(number)
        assert value not in (float("inf"), float("-inf")), f"{number} is not a finite number"
        return value

    value = json.loads(text, parse_constant=_no_constant, parse_float=finite)
    _walk_strings(value)
    return value


def strict_lines(path: Path) -> list[Any]:
    """Every OUTCOME_FILE line, each read with strict_json; each line must be plain ASCII (no line-breaking characters)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert data.isascii(), "an OUTCOME_FILE line holds a non-ASCII byte"
    return [strict_json(line) for line in data.decode("ascii").split("\n") if line]
