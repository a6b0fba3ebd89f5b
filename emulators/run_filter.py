"""`$filter` of Runs - List: the spec's `RunFilter` subset of OData, parsed by odata-query, checked and evaluated here.

The swagger allows the fields of `RunFilter`, comparison operators, `and`/`or`, parentheses and the one string
function `contains` ("Arithmetic operators are not supported. The allowed string function is 'contains'. All
logical operators except 'Not', 'Has', 'All' are allowed."). odata-query (OData v4 grammar) parses that subset,
bare date-time literals included; this module refuses everything else and compiles the tree to a predicate.
The OData v2/v3 form `datetime'2026-11-01T00:00:00Z'` is accepted too and read as the bare literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

__all__ = ["FIELDS", "FILTER_ERROR_CODE", "InvalidFilter", "RunPredicate", "filter_view", "output_image_manifests",
           "parse_run_filter"]

# The Runs REST docs name no error code for a bad $filter; ARM answers 400 with this one (our choice, see README).
FILTER_ERROR_CODE = "InvalidFilter"
MAX_FILTER_LENGTH = 4096

FieldType = Literal["string", "datetime", "boolean"]
FIELDS: dict[str, FieldType] = {
    "RunId": "string",
    "RunType": "string",
    "Status": "string",
    "CreateTime": "datetime",
    "FinishTime": "datetime",
    "OutputImageManifests": "string",
    "IsArchiveEnabled": "boolean",
    "TaskName": "string",
}
_BY_LOWER = {name.lower(): name for name in FIELDS}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
}
_MIRROR: dict[type, type] = {ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Lt: ast.Gt, ast.LtE: ast.GtE}
_ORDERED = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)
_V3_DATETIME = re.compile(r"datetime'([^']*)'", re.IGNORECASE)

RunView = dict[str, Any]  # RunFilter field name -> value (None when the run has none)
RunPredicate = Callable[[RunView], bool]


class InvalidFilter(ValueError):
    """A `$filter` outside the RunFilter subset; the message says where."""


@dataclass(frozen=True)
class _Field:
    name: str
    type: FieldType


def _parse_time(value: str) -> datetime:
    """An RFC 3339 time as an aware datetime (naive literals are UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def output_image_manifests(properties: dict[str, Any]) -> str:
    """`repo:tag` and `repo@digest` of every output image, comma-separated (what `contains(OutputImageManifests,…)` sees)."""
    forms: list[str] = []
    for image in properties.get("outputImages") or []:
        repository = image.get("repository")
        if not repository:
            continue
        if image.get("tag"):
            forms.append(f"{repository}:{image['tag']}")
        if image.get("digest"):
            forms.append(f"{repository}@{image['digest']}")
    return ",".join(forms)


def filter_view(run: dict[str, Any]) -> RunView:
    """The RunFilter fields of a Run."""
    properties = run.get("properties") or {}

    def time(name: str) -> datetime | None:
        value = properties.get(name)
        return _parse_time(value) if isinstance(value, str) else None

    return {
        "RunId": properties.get("runId"),
        "RunType": properties.get("runType"),
        "Status": properties.get("status"),
        "CreateTime": time("createTime"),
        "FinishTime": time("finishTime"),
        "OutputImageManifests": output_image_manifests(properties) or None,
        "IsArchiveEnabled": bool(properties.get("isArchiveEnabled", False)),
        "TaskName": properties.get("task"),
    }


def _strip_v3_datetimes(text: str) -> str:
    """Rewrite `datetime'…'` outside string literals to the bare v4 literal."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "'":  # copy a whole string literal ('' is an escaped quote)
            end = index + 1
            while end < len(text):
                if text[end] == "'" and text[end + 1:end + 2] == "'":
                    end += 2
                elif text[end] == "'":
                    break
                else:
                    end += 1
            out.append(text[index:end + 1])
            index = end + 1
            continue
        match = _V3_DATETIME.match(text, index)
        if match and (index == 0 or not (text[index - 1].isalnum() or text[index - 1] == "_")):
            out.append(match.group(1))
            index = match.end()
            continue
        out.append(char)
        index += 1
    return "".join(out)


def parse_run_filter(text: str) -> RunPredicate:
    """Compile a `$filter` into a predicate over `filter_view(run)`; raises InvalidFilter."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilter(f"The $filter is longer than {MAX_FILTER_LENGTH} characters.")
    if not text.strip():
        return lambda view: True
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(_strip_v3_datetimes(text)))
    except ODataException as exc:
        raise InvalidFilter(f"The $filter '{text}' could not be parsed: {exc}") from None
    except (ValueError, TypeError, IndexError, AttributeError, RecursionError) as exc:  # lexer/parser internals
        raise InvalidFilter(f"The $filter '{text}' could not be parsed: {type(exc).__name__}.") from None
    try:
        return _compile_bool(tree)
    except RecursionError:
        raise InvalidFilter("The $filter is nested too deeply.") from None


def _compile_bool(node: ast._Node) -> RunPredicate:
    """A node that must be a boolean expression."""
    if isinstance(node, ast.BoolOp):
        left, right = _compile_bool(node.left), _compile_bool(node.right)
        if isinstance(node.op, ast.And):
            return lambda view: left(view) and right(view)
        return lambda view: left(view) or right(view)
    if isinstance(node, ast.Compare):
        return _compile_compare(node)
    if isinstance(node, ast.Call):
        return _compile_call(node)
    if isinstance(node, ast.UnaryOp):
        raise InvalidFilter("The logical operator 'not' is not supported in a runs $filter.")
    if isinstance(node, ast.BinOp):
        raise InvalidFilter("Arithmetic operators are not supported in a runs $filter.")
    if isinstance(node, ast.Identifier) and _field(node).type == "boolean":
        name = _field(node).name
        return lambda view: view[name] is True
    raise InvalidFilter(f"'{_describe(node)}' is not a boolean expression.")


def _field(node: ast._Node) -> _Field:
    """A RunFilter field named by an identifier (case-insensitive)."""
    if isinstance(node, ast.BinOp):
        raise InvalidFilter("Arithmetic operators are not supported in a runs $filter.")
    if not isinstance(node, ast.Identifier) or node.namespace:
        raise InvalidFilter(f"'{_describe(node)}' is not a property of RunFilter.")
    name = _BY_LOWER.get(node.name.lower())
    if name is None:
        raise InvalidFilter(f"Could not find a property named '{node.name}' on type 'RunFilter'.")
    return _Field(name, FIELDS[name])


def _literal(field: _Field, node: ast._Node) -> Any:
    """The Python value of a literal compared with `field`, checked against its type."""
    if isinstance(node, ast.Null):
        return None
    if field.type == "boolean" and isinstance(node, ast.Boolean):
        return node.py_val
    if field.type == "string" and isinstance(node, ast.String):
        return node.py_val
    if field.type == "datetime" and isinstance(node, ast.Date):  # a bare date is that day's midnight UTC
        return datetime.fromisoformat(node.val).replace(tzinfo=timezone.utc)
    if field.type == "datetime" and isinstance(node, (ast.DateTime, ast.String)):
        try:
            return _parse_time(node.val)
        except ValueError:
            raise InvalidFilter(f"'{node.val}' is not a valid date-time for '{field.name}'.") from None
    raise InvalidFilter(f"'{_describe(node)}' cannot be compared with the {field.type} property '{field.name}'.")


def _compile_compare(node: ast.Compare) -> RunPredicate:
    """`Field op literal` (or `literal op Field`)."""
    comparator, left, right = type(node.comparator), node.left, node.right
    if comparator not in _COMPARE:
        raise InvalidFilter(f"The operator '{comparator.__name__}' is not supported in a runs $filter.")
    if not isinstance(left, ast.Identifier) and isinstance(right, ast.Identifier):
        left, right, comparator = right, left, _MIRROR.get(comparator, comparator)
    field = _field(left)
    value = _literal(field, right)
    if comparator in _ORDERED and (field.type == "boolean" or value is None):
        raise InvalidFilter(f"The operator '{comparator.__name__}' cannot be applied to '{field.name}' and that value.")
    test, name = _COMPARE[comparator], field.name
    if comparator in _ORDERED:  # a run without the value (no FinishTime yet) is neither before nor after anything
        return lambda view: view[name] is not None and test(view[name], value)
    return lambda view: test(view[name], value)


def _compile_call(node: ast.Call) -> RunPredicate:
    """`contains(StringField, 'text')`, the one string function the spec allows."""
    function = node.func.name.lower() if isinstance(node.func, ast.Identifier) else ""
    if function != "contains":
        raise InvalidFilter(f"The function '{_describe(node.func)}' is not supported; the allowed string function is 'contains'.")
    if len(node.args) != 2:
        raise InvalidFilter("The function 'contains' takes two arguments.")
    field = _field(node.args[0])
    if field.type != "string" or not isinstance(node.args[1], ast.String):
        raise InvalidFilter(f"'contains' needs a string property and a string literal, not '{field.name}'.")
    name, needle = field.name, node.args[1].py_val
    return lambda view: view[name] is not None and needle in view[name]


def _describe(node: ast._Node) -> str:
    """A short name for a node in an error message."""
    if isinstance(node, ast.Identifier):
        return ".".join((*node.namespace, node.name))
    if isinstance(node, ast._Literal):
        return str(getattr(node, "val", type(node).__name__))
    return type(node).__name__
