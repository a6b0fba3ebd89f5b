"""Entities from the official Service Bus emulator's `Config.json`, parsed into frozen objects.

The file format is the one `servicebus-emulator/Config.json` uses (UserConfig → Namespaces → Queues /
Topics → Subscriptions → Rules). Every key is checked: a property this emulator does not implement, or
implements only at its default, raises `ConfigError` at start instead of being silently ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from emulators.servicebus.sqlfilter import Predicate, parse_sql_filter

__all__ = ["ConfigError", "NamespaceConfig", "QueueConfig", "RuleConfig", "SubscriptionConfig", "TopicConfig", "load_config"]

_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
_DEFAULT_TTL = 3600.0
_DEFAULT_LOCK = 60.0
_DEFAULT_DUPLICATE_WINDOW = 600.0


class ConfigError(ValueError):
    """The emulator configuration is malformed or asks for something this emulator does not support."""


def parse_duration(text: object, where: str) -> float:
    """Parse an ISO 8601 duration such as `PT5M` into seconds."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or text in ("P", "PT"):
        raise ConfigError(f"{where}: {text!r} is not an ISO 8601 duration such as PT5M")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


@dataclass(frozen=True)
class RuleConfig:
    """One subscription rule: a SQL filter (the default rule `$Default` matches everything)."""

    name: str
    expression: str
    predicate: Predicate = field(compare=False, repr=False)


@dataclass(frozen=True)
class SubscriptionConfig:
    """A topic subscription and its receive-side properties."""

    name: str
    lock_duration: float = _DEFAULT_LOCK
    max_delivery_count: int = 10
    default_ttl: float = _DEFAULT_TTL
    dead_letter_on_expiration: bool = False
    rules: tuple[RuleConfig, ...] = ()


@dataclass(frozen=True)
class QueueConfig:
    """A queue: send-side (duplicate detection) and receive-side properties."""

    name: str
    lock_duration: float = _DEFAULT_LOCK
    max_delivery_count: int = 10
    default_ttl: float = _DEFAULT_TTL
    dead_letter_on_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_window: float = _DEFAULT_DUPLICATE_WINDOW


@dataclass(frozen=True)
class TopicConfig:
    """A topic, its duplicate detection and its subscriptions."""

    name: str
    default_ttl: float = _DEFAULT_TTL
    requires_duplicate_detection: bool = False
    duplicate_window: float = _DEFAULT_DUPLICATE_WINDOW
    subscriptions: tuple[SubscriptionConfig, ...] = ()


@dataclass(frozen=True)
class NamespaceConfig:
    """The one namespace the emulator serves."""

    name: str
    queues: tuple[QueueConfig, ...]
    topics: tuple[TopicConfig, ...]


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _unsupported_unless(value: object, default: object, where: str) -> None:
    """Accept a property this emulator does not implement only at the value that changes nothing."""
    if value != default:
        raise ConfigError(f"{where}: {value!r} is not supported by this emulator (only {default!r})")


# Each property: how to read it into a keyword of the config class, or None when only the no-op value is allowed.
_RECEIVE_PROPERTIES: dict[str, Any] = {
    "LockDuration": ("lock_duration", parse_duration),
    "MaxDeliveryCount": ("max_delivery_count", _count),
    "DefaultMessageTimeToLive": ("default_ttl", parse_duration),
    "DeadLetteringOnMessageExpiration": ("dead_letter_on_expiration", _bool),
    "ForwardTo": ("", ""),
    "ForwardDeadLetteredMessagesTo": ("", ""),
    "RequiresSession": ("", False),
}
_SEND_PROPERTIES: dict[str, Any] = {
    "RequiresDuplicateDetection": ("requires_duplicate_detection", _bool),
    "DuplicateDetectionHistoryTimeWindow": ("duplicate_window", parse_duration),
}
_TOPIC_PROPERTIES = {**_SEND_PROPERTIES, "DefaultMessageTimeToLive": ("default_ttl", parse_duration)}


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _keys(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unsupported keys {unknown} (supported: {sorted(allowed)})")


def _name(obj: Mapping[str, Any], where: str) -> str:
    name = obj.get("Name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,259}", name):
        raise ConfigError(f"{where}: Name must be a Service Bus entity name, got {name!r}")
    return name


def _properties(raw: object, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    props = _object(raw if raw is not None else {}, f"{where}.Properties")
    _keys(props, set(table), f"{where}.Properties")
    kwargs: dict[str, Any] = {}
    for key, value in props.items():
        target, reader = table[key]
        if not target:
            _unsupported_unless(value, reader, f"{where}.Properties.{key}")
        else:
            kwargs[target] = reader(value, f"{where}.Properties.{key}")
    return kwargs


def _rule(raw: object, where: str) -> RuleConfig:
    obj = _object(raw, where)
    _keys(obj, {"Name", "Properties"}, where)
    props = _object(obj.get("Properties"), f"{where}.Properties")
    _keys(props, {"FilterType", "SqlFilter", "Action"}, f"{where}.Properties")
    if props.get("FilterType") != "Sql":
        raise ConfigError(f"{where}: FilterType {props.get('FilterType')!r} is not supported (only 'Sql')")
    if props.get("Action") not in (None, {}):
        raise ConfigError(f"{where}: rule actions are not supported")
    sql = _object(props.get("SqlFilter"), f"{where}.Properties.SqlFilter")
    _keys(sql, {"SqlExpression"}, f"{where}.Properties.SqlFilter")
    expression = sql.get("SqlExpression")
    if not isinstance(expression, str):
        raise ConfigError(f"{where}: SqlExpression must be a string")
    try:
        predicate = parse_sql_filter(expression)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from error
    return RuleConfig(_name(obj, where), expression, predicate)


def _subscription(raw: object, where: str) -> SubscriptionConfig:
    obj = _object(raw, where)
    _keys(obj, {"Name", "Properties", "Rules"}, where)
    name = _name(obj, where)
    rules = tuple(_rule(r, f"{where}.Rules[{i}]") for i, r in enumerate(_list(obj.get("Rules", []), f"{where}.Rules")))
    return SubscriptionConfig(name, rules=rules, **_properties(obj.get("Properties"), _RECEIVE_PROPERTIES, where))


def _queue(raw: object, where: str) -> QueueConfig:
    obj = _object(raw, where)
    _keys(obj, {"Name", "Properties"}, where)
    table = {**_RECEIVE_PROPERTIES, **_SEND_PROPERTIES}
    return QueueConfig(_name(obj, where), **_properties(obj.get("Properties"), table, where))


def _topic(raw: object, where: str) -> TopicConfig:
    obj = _object(raw, where)
    _keys(obj, {"Name", "Properties", "Subscriptions"}, where)
    subs = _list(obj.get("Subscriptions", []), f"{where}.Subscriptions")
    subscriptions = tuple(_subscription(s, f"{where}.Subscriptions[{i}]") for i, s in enumerate(subs))
    properties = _properties(obj.get("Properties"), _TOPIC_PROPERTIES, where)
    return TopicConfig(_name(obj, where), subscriptions=subscriptions, **properties)


def load_config(source: str | Path | Mapping[str, Any]) -> NamespaceConfig:
    """Read a Config.json (path or already-parsed mapping) into the one namespace it declares."""
    if isinstance(source, (str, Path)):
        try:
            raw: Any = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{source}: {error}") from error
    else:
        raw = source
    user = _object(_object(raw, "config").get("UserConfig"), "UserConfig")
    _keys(user, {"Namespaces", "Logging"}, "UserConfig")
    namespaces = _list(user.get("Namespaces"), "UserConfig.Namespaces")
    if len(namespaces) != 1:
        raise ConfigError(f"UserConfig.Namespaces: exactly one namespace is supported, got {len(namespaces)}")
    where = "UserConfig.Namespaces[0]"
    ns = _object(namespaces[0], where)
    _keys(ns, {"Name", "Queues", "Topics"}, where)
    queues = tuple(_queue(q, f"{where}.Queues[{i}]") for i, q in enumerate(_list(ns.get("Queues", []), f"{where}.Queues")))
    topics = tuple(_topic(t, f"{where}.Topics[{i}]") for i, t in enumerate(_list(ns.get("Topics", []), f"{where}.Topics")))
    names = [e.name.lower() for e in (*queues, *topics)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: entity names must be unique (case-insensitively): {duplicates}")
    for topic in topics:
        subs = [s.name.lower() for s in topic.subscriptions]
        if len(set(subs)) != len(subs):
            raise ConfigError(f"{where}: topic {topic.name!r} has duplicate subscription names")
    return NamespaceConfig(_name(ns, where), queues, topics)
