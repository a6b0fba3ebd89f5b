"""The Bicep files as the tests read them: pycep-parser's tree, plus the raw lines it drops (comments).

pycep-parser (pure Python, a Lark grammar of Bicep) parses; it compiles nothing, resolves no types and
knows no resource schema, so a file it accepts can still fail `bicep build` (CI's first compile). Its tree
gives string literals and identifiers alike as Python strings, and expressions as nested
`{"operator": …}` / `{"function": …}` dictionaries; `ref()` turns an accessor chain back into `a.b.c`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pycep import BicepParser

__all__ = [
    "Template",
    "braces_outside_strings",
    "parse",
    "parse_text",
    "ref",
]


@functools.cache
def _parser() -> BicepParser:
    return BicepParser(cache=False)


def parse_text(text: str) -> dict[str, Any]:
    """pycep-parser's tree of one Bicep text; raises (Lark's errors, ValueError) on a syntax error."""
    return _parser().parse(text=text)


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """The tree of one .bicep file (parsed once per test session)."""
    return parse_text(path.read_text(encoding="utf-8"))


def ref(expression: Any) -> Any:
    """`a.b.c` for a property or nested-resource accessor chain (`a::b` as `a.b`); anything else as it is."""
    if isinstance(expression, dict) and "operator" in expression:
        operator = expression["operator"]
        if operator["type"] in ("property_accessor", "nested_resource_accessor"):
            operands = operator["operands"]
            return f"{ref(operands['operand_1'])}.{ref(operands['operand_2'])}"
    return expression


def braces_outside_strings(text: str) -> list[int]:
    """Offsets of `{` and `}` that are syntax: not inside a '…' / '''…''' string or a // or /* */ comment."""
    found: list[int] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            i = n if end < 0 else end + 3
        elif text[i] == "'":
            i += 1
            while i < n and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            if text[i] in "{}":
                found.append(i)
            i += 1
    return found


class Template:
    """One .bicep file: its parsed tree and its raw text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.tree = parse(path)

    def params(self) -> dict[str, dict[str, Any]]:
        """Declared parameters: {"type", "default" (None: required), "decorators"}."""
        return self.tree.get("parameters", {})

    def default(self, param: str) -> Any:
        """A parameter's default value."""
        return self.params()[param]["default"]

    def required_params(self) -> set[str]:
        """Parameters without a default."""
        return {name for name, param in self.params().items() if param["default"] is None}

    def decorators(self, param: str) -> set[str]:
        """The decorator names of a parameter (secure, description, …)."""
        return {decorator["type"] for decorator in self.params()[param]["decorators"]}

    def variable(self, name: str) -> Any:
        """A variable's value."""
        return self.tree["variables"][name]["value"]

    def outputs(self) -> set[str]:
        """Declared output names."""
        return set(self.tree.get("outputs", {}))

    def resources(self) -> dict[str, dict[str, Any]]:
        """Symbol → declaration (type, api_version, existing, config)."""
        return self.tree.get("resources", {})

    def resource(self, symbol: str) -> dict[str, Any]:
        """A resource's body (name, scope, parent, properties, …), its `if (…)` condition set aside."""
        config = self.resources()[symbol]["config"]
        return config["config"] if "condition" in config else config

    def condition(self, symbol: str) -> Any:
        """A resource's `if (…)` condition, None when it is always deployed."""
        return self.resources()[symbol]["config"].get("condition")

    def resource_type(self, symbol: str) -> str:
        """`type@apiVersion` of a resource."""
        declaration = self.resources()[symbol]
        return f"{declaration['type']}@{declaration['api_version']}"

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Symbol → body of every resource of one type (any API version)."""
        return {symbol: self.resource(symbol) for symbol, body in self.resources().items() if body["type"] == resource_type}

    def modules(self) -> dict[str, str]:
        """Module symbol → its relative path."""
        return {symbol: module["detail"]["path"] for symbol, module in self.tree.get("modules", {}).items()}

    def module(self, symbol: str) -> dict[str, Any]:
        """A module call's body (name, scope, params)."""
        return self.tree["modules"][symbol]["config"]
