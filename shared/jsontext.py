"""JSON text in and out (contract §2, last rule): hostile bodies decoded strictly, everything written strict.

In: json.loads accepts what other parsers refuse or read differently (NaN, 1e999 as infinity, lone
surrogate escapes, duplicate keys keeping the last) and raises what is not a ValueError (RecursionError)
or a ValueError without JSONDecodeError's fields (an integer past Python's digit limit). `loads` turns
every such body into one `UnreadableJson` naming the problem.

Out: a Run that ARM returned, or an event, may still hold NaN or lone surrogates (json.loads accepts both),
so `dumps` writes NaN/Infinity as null and each lone surrogate as U+FFFD: every outcome, response body and
OUTCOME_FILE line is strict JSON (RFC 8259 §6 and §8.1: finite numbers, UTF-8 text).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INTEGER_DIGITS",
    "UnreadableJson",
    "dumps",
    "encode",
    "encoded_size",
    "has_lone_surrogate",
    "loads",
    "replace_lone_surrogates",
]

MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are refused: no event needs it, and deep values crash recursive code."""
MAX_INTEGER_DIGITS = 1000
"""Below Python's int_max_str_digits (4300), whose ValueError carries no position."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Built once: json.dumps with non-default options builds a new encoder on every call."""


class UnreadableJson(ValueError):
    """The text is not strict JSON that the app can hold; `problem` says why in a few words."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def loads(text: str) -> Any:
    """Decode strict JSON: finite numbers, unique keys, no lone surrogates, at most MAX_DEPTH levels."""
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise UnreadableJson(f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    except RecursionError:
        raise UnreadableJson(f"is nested deeper than {MAX_DEPTH} levels") from None
    if not _may_hold_deep_or_surrogate(text):
        return value
    _check_tree(value)
    return value


def dumps(value: Any, *, ascii_only: bool = False) -> str:
    """Compact strict JSON of a decoded value: NaN/Infinity become null, lone surrogates U+FFFD.

    `ascii_only` escapes every other non-ASCII character too (JSON-lines readers that split at U+2028).
    """
    try:
        text = _ENCODER.encode(value)
    except ValueError:  # only NaN/Infinity: decoded JSON holds no other unencodable value
        text = _ENCODER.encode(_finite(value))
    if text.isascii():
        return text
    text = replace_lone_surrogates(text)
    return _NON_ASCII.sub(_escape, text) if ascii_only else text


def encode(value: Any) -> bytes:
    """`dumps` as UTF-8 bytes, as it goes on the wire."""
    return dumps(value).encode("utf-8")


def encoded_size(text: str) -> int:
    """Bytes the string takes inside JSON on the wire (UTF-8, escapes included, quotes excluded)."""
    return len(encode(text)) - 2


def replace_lone_surrogates(text: str) -> str:
    """The text with each surrogate code point replaced by U+FFFD, as `dumps` writes it."""
    return _SURROGATE.sub("\ufffd", text)


def has_lone_surrogate(text: str) -> bool:
    """True when the string holds a surrogate code point, which UTF-8 cannot carry."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _may_hold_deep_or_surrogate(text: str) -> bool:
    """False when the text cannot decode to a value _check_tree refuses (the common case, checked in C).

    A lone surrogate comes from a raw one (not ASCII) or a \\u escape, and a value nested deeper than
    MAX_DEPTH needs more than MAX_DEPTH brackets.
    """
    return not text.isascii() or "\\u" in text or text.count("[") + text.count("{") > MAX_DEPTH


def _refuse_constant(name: str) -> Any:
    raise UnreadableJson(f"holds {name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnreadableJson(f"holds a number too large for a double ({text[:20]}{'…' if len(text) > 20 else ''})")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise UnreadableJson(f"holds an integer of more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on a repeated key (first or last wins), so a check and a use could read different values.
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise UnreadableJson(f"repeats the key '{replace_lone_surrogates(key)[:40]}'")
        seen.add(key)
    return value


def _check_tree(value: Any) -> None:
    """Depth and lone surrogates, walked without recursion (the value may be just under the interpreter's limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                raise UnreadableJson("holds a lone surrogate escape (such as \\ud800), which is not Unicode text")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise UnreadableJson(f"is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(child) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(child) for child in value]
    return value


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int, object_pairs_hook=_unique_keys
)
"""Built once, as _ENCODER: json.loads with these hooks would build a new decoder on every call."""
