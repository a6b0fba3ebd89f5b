"""The subset of the Service Bus SQL filter grammar that subscription rules use, parsed once into a predicate.

Supported: `=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`, `AND`, `OR`, `NOT`, `[NOT] IN (…)`, `IS [NOT] NULL`, parentheses,
string ('it''s'), integer, decimal and boolean literals, user properties (`outcome`, `user.outcome`, `[odd name]`)
and the system properties below (`sys.Label`, …). Anything else (LIKE, EXISTS, arithmetic, functions) raises
`ValueError` at parse time. Evaluation is three-valued as in SQL: a missing property or a comparison across types
is unknown, and a rule matches only when its filter is true.
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Predicate", "SYSTEM_PROPERTIES", "parse_sql_filter"]

Predicate = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
Value = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
SYSTEM_PROPERTIES = frozenset(
    {"messageid", "correlationid", "label", "contenttype", "to", "replyto", "sessionid", "replytosessionid"}
)
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?(?![\w.]))|(?P<op><>|!=|<=|>=|[=<>(),])"
    r"|(?P<bracket>\[[^\]]+\])|(?P<word>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)?))"
)
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE"})
_REFUSED = frozenset({"LIKE", "EXISTS", "ESCAPE", "BETWEEN", "SET", "REMOVE"})
_UNKNOWN = None


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(expression: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(expression):
        if expression[pos:].strip() == "":
            break
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise ValueError(f"SQL filter: unexpected text at {pos}: {expression[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "word" and text.upper() in _REFUSED:
            raise ValueError(f"SQL filter: {text.upper()} is not supported by this emulator")
        out.append(_Token("kw" if kind == "word" and text.upper() in _KEYWORDS else kind, text))
        pos = match.end()
    return out


def _comparable(left: Any, right: Any) -> bool:
    """Only values of one family compare: strings with strings, booleans with booleans, numbers with numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool)
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str)
    return isinstance(left, (int, float)) and isinstance(right, (int, float))


def _compare(op: str, left: Any, right: Any) -> bool | None:
    if left is None or right is None or not _comparable(left, right):
        return _UNKNOWN
    if isinstance(left, bool) and op not in ("=", "<>", "!="):
        return _UNKNOWN
    match op:
        case "=":
            return left == right
        case "<>" | "!=":
            return left != right
        case "<":
            return left < right
        case "<=":
            return left <= right
        case ">":
            return left > right
        case _:
            return left >= right


class _Parser:
    """Recursive descent: or → and → not → predicate; each returns a three-valued evaluator."""

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.pos = 0

    def peek(self, upper: str | None = None) -> _Token | None:
        token = self.tokens[self.pos] if self.pos < len(self.tokens) else None
        if upper is not None and (token is None or token.text.upper() != upper):
            return None
        return token

    def take(self, upper: str | None = None) -> _Token:
        token = self.peek(upper)
        if token is None:
            found = self.tokens[self.pos].text if self.pos < len(self.tokens) else "end of filter"
            raise ValueError(f"SQL filter: expected {upper or 'a term'}, found {found!r}")
        self.pos += 1
        return token

    def parse(self) -> Value:
        node = self.disjunction()
        if self.pos != len(self.tokens):
            raise ValueError(f"SQL filter: unexpected {self.tokens[self.pos].text!r}")
        return node

    def disjunction(self) -> Value:
        node = self.conjunction()
        while self.peek("OR"):
            self.take()
            left, right = node, self.conjunction()
            node = lambda a, s, l=left, r=right: _or(l(a, s), r(a, s))  # noqa: E731
        return node

    def conjunction(self) -> Value:
        node = self.negation()
        while self.peek("AND"):
            self.take()
            left, right = node, self.negation()
            node = lambda a, s, l=left, r=right: _and(l(a, s), r(a, s))  # noqa: E731
        return node

    def negation(self) -> Value:
        if self.peek("NOT"):
            self.take()
            inner = self.negation()
            return lambda a, s: None if (v := inner(a, s)) is None else not v
        return self.predicate()

    def predicate(self) -> Value:
        if self.peek("("):
            self.take()
            node = self.disjunction()
            self.take(")")
            return node
        left = self.operand()
        token = self.peek()
        if token is None or token.kind not in ("op", "kw") or token.text in ("(", ")", ","):
            raise ValueError("SQL filter: a property or literal alone is not a condition")
        if token.text.upper() == "IS":
            self.take()
            negate = bool(self.peek("NOT")) and bool(self.take())
            self.take("NULL")
            return lambda a, s: (left(a, s) is not None) if negate else (left(a, s) is None)
        if token.text.upper() in ("NOT", "IN"):
            negate = token.text.upper() == "NOT" and bool(self.take())
            self.take("IN")
            options = self.literal_list()
            return lambda a, s: _in(left(a, s), options, negate)
        if token.kind != "op":
            raise ValueError(f"SQL filter: unexpected {token.text!r}")
        op = self.take().text
        right = self.operand()
        return lambda a, s: _compare(op, left(a, s), right(a, s))

    def literal_list(self) -> tuple[Any, ...]:
        self.take("(")
        values = [self.literal()]
        while self.peek(","):
            self.take()
            values.append(self.literal())
        self.take(")")
        return tuple(values)

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "str":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "num":
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "kw" and token.text.upper() in ("TRUE", "FALSE"):
            return token.text.upper() == "TRUE"
        raise ValueError(f"SQL filter: expected a literal, found {token.text!r}")

    def operand(self) -> Value:
        token = self.peek()
        if token is not None and (token.kind in ("str", "num") or token.text.upper() in ("TRUE", "FALSE")):
            value = self.literal()
            return lambda a, s: value
        if token is not None and token.kind == "kw" and token.text.upper() == "NULL":
            self.take()
            return lambda a, s: None
        token = self.take()
        if token.kind == "bracket":
            name = token.text[1:-1]
            return lambda a, s: a.get(name)
        if token.kind != "word":
            raise ValueError(f"SQL filter: expected a property, found {token.text!r}")
        scope, _, name = token.text.rpartition(".")
        if scope.lower() == "sys":
            key = name.lower()
            if key not in SYSTEM_PROPERTIES:
                raise ValueError(f"SQL filter: system property sys.{name} is not supported")
            return lambda a, s: s.get(key)
        if scope not in ("", "user") and scope.lower() != "user":
            raise ValueError(f"SQL filter: unknown property scope {scope!r}")
        return lambda a, s: a.get(name)


def _and(left: bool | None, right: bool | None) -> bool | None:
    if left is False or right is False:
        return False
    return None if left is None or right is None else True


def _or(left: bool | None, right: bool | None) -> bool | None:
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


def _in(value: Any, options: tuple[Any, ...], negate: bool) -> bool | None:
    comparable = [o for o in options if value is not None and _comparable(value, o)]
    if value is None or not comparable:
        return _UNKNOWN
    found = any(value == o for o in comparable)
    return not found if negate else found


def parse_sql_filter(expression: str) -> Predicate:
    """Parse a SQL filter expression into `predicate(application_properties, system_properties) -> bool`."""
    if not expression.strip():
        raise ValueError("SQL filter: empty expression")
    evaluate = _Parser(expression).parse()
    return lambda app, system: evaluate(app, system) is True
