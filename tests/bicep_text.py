"""Just enough of Bicep's syntax to check infra/*.bicep textually (no Bicep compiler is needed to run the tests).

Comments are dropped, strings are skipped while matching braces (their `${…}` interpolations included), and
a block is the text between an opening `{` and its matching `}`.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "Bicep",
    "block_after",
    "properties",
    "strip_comments",
]


def strip_comments(text: str) -> str:
    """The text without // and /* */ comments; strings ('…', with \\' escapes and ''' blocks) are kept as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _string_end(text: str, quote_at: int) -> int:
    """Index of the quote closing the Bicep string that opens at `quote_at` (backslash escapes skipped)."""
    i = quote_at + 1
    while i < len(text) and text[i] != "'":
        i += 2 if text[i] == "\\" else 1
    return i


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "'":
            i = _string_end(text, i)
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise AssertionError(f"unbalanced braces after offset {open_at}")


def block_after(text: str, pattern: str) -> str:
    """The inside of the `{…}` block that the first match of `pattern` (ending at or just before `{`) opens."""
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"no match for {pattern!r}"
    open_at = text.index("{", match.end() - 1)
    return text[open_at + 1 : _matching_brace(text, open_at)]


def properties(block: str) -> dict[str, str]:
    """The `name: value` entries at the top level of a block (nested blocks are skipped; values as written)."""
    entries: dict[str, str] = {}
    i, depth, line_start = 0, 0, 0
    lines: list[str] = []
    while i < len(block):
        char = block[i]
        if char == "'":
            i = _string_end(block, i)
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "\n":
            if depth == 0:
                lines.append(block[line_start:i])
                line_start = i + 1
        i += 1
    lines.append(block[line_start:])
    for line in lines:
        match = re.match(r"\s*('[^']*'|[A-Za-z_][\w]*)\s*:\s*(.*?)\s*$", line, re.DOTALL)
        if match:
            entries[match.group(1).strip("'")] = match.group(2)
    return entries


class Bicep:
    """One .bicep file, comments removed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = strip_comments(path.read_text(encoding="utf-8"))

    def params(self) -> dict[str, str | None]:
        """Declared parameters and their defaults as written (None: required)."""
        found: dict[str, str | None] = {}
        for match in re.finditer(r"^param\s+(\w+)\s+(\w+\??)(?:\s*=\s*(.+?))?\s*$", self.text, re.MULTILINE):
            optional = match.group(2).endswith("?")
            found[match.group(1)] = match.group(3) if match.group(3) is not None else ("null" if optional else None)
        return found

    def outputs(self) -> set[str]:
        """Declared output names."""
        return set(re.findall(r"^output\s+(\w+)\s", self.text, re.MULTILINE))

    def resource(self, symbol: str) -> str:
        """The body of `resource <symbol> '<type>@<version>' = [if (…)] {…}` (nested resources included)."""
        return block_after(self.text, rf"^\s*resource\s+{symbol}\s+'[^']+'\s*=\s*(?:if\s*\(.*?\)\s*)?\{{")

    def resource_type(self, symbol: str) -> str:
        """The type@apiVersion of a resource symbol."""
        match = re.search(rf"^\s*resource\s+{symbol}\s+'([^']+)'", self.text, re.MULTILINE)
        assert match is not None, f"{self.path.name}: no resource {symbol}"
        return match.group(1)

    def resources(self) -> list[str]:
        """Every declared resource symbol."""
        return re.findall(r"^\s*resource\s+(\w+)\s+'", self.text, re.MULTILINE)

    def modules(self) -> dict[str, str]:
        """Module symbol → its relative path."""
        return dict(re.findall(r"^module\s+(\w+)\s+'([^']+)'", self.text, re.MULTILINE))

    def module(self, symbol: str) -> str:
        """The body of `module <symbol> '<path>' = {…}`."""
        return block_after(self.text, rf"^module\s+{symbol}\s+'[^']+'\s*=\s*\{{")

    def var_block(self, name: str) -> str:
        """The body of `var <name> = {…}`."""
        return block_after(self.text, rf"^var\s+{name}\s*=\s*\{{")
