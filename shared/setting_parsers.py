"""Parsers of setting values (contract §1): each turns one setting's text into its value or raises Malformed.

A parser sees the value already stripped of surrounding whitespace and never empty (empty means unset,
see `shared.settings`). Its message says what the value must be, never what it was: settings hold
secrets and connection strings.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from datetime import date

__all__ = [
    "GUID",
    "REGISTRY",
    "RESOURCE_GROUP",
    "Malformed",
    "api_version",
    "arm_endpoint",
    "arm_scope",
    "client_id",
    "connection_string",
    "credential_kind",
    "entity_name",
    "file_path",
    "guid",
    "is_loopback",
    "namespace",
    "ncrontab",
    "number",
    "registry_list",
    "registry_name",
    "resource_group",
    "text",
]

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RESOURCE_GROUP = re.compile(r"^[\w\-.()]{1,90}$")
REGISTRY = re.compile(r"^[a-zA-Z0-9]{5,50}$")

# A DNS name of ASCII labels (IDN hosts are written in their xn-- form), or an IPv4 address.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_ENDPOINT = re.compile(
    rf"^(?P<scheme>[A-Za-z]+)://(?:(?P<host>{_HOST})|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{{1,5}}))?/?$", re.ASCII
)
_NAMESPACE = re.compile(rf"^{_HOST}(?::(?P<port>[1-9][0-9]{{0,4}}))?$", re.ASCII)
# Service Bus entity names: letters, digits, . - _ /, starting and ending with a letter or digit, at most 260.
_ENTITY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9])?$", re.ASCII)
_API_VERSION = re.compile(r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:-preview)?$", re.ASCII)
_SCOPE = re.compile(rf"^https://{_HOST}(?::[0-9]{{1,5}})?/\.default$", re.ASCII)
_INTEGER = re.compile(r"^\+?[0-9]{1,18}$", re.ASCII)
_DECIMAL = re.compile(r"^\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?$", re.ASCII)
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]{1,64}$", re.ASCII)
_CREDENTIAL = re.compile(r"^[A-Za-z]{1,64}$", re.ASCII)


class Malformed(ValueError):
    """A setting's value breaks its rule; the message is the rule, never the value."""


def text(value: str) -> str:
    """Any text without control characters."""
    _no_control_characters(value)
    return value


def file_path(value: str) -> str:
    """A path of a local file; one line, no NUL (the OS would refuse it only when the first outcome is written)."""
    return text(value)


def entity_name(value: str) -> str:
    """A Service Bus queue or topic name."""
    _no_control_characters(value)
    if not _ENTITY.fullmatch(value):
        raise Malformed("must be a Service Bus entity name: 1-260 letters, digits, . - _ /, letters or digits at both ends")
    return value


def namespace(value: str) -> str:
    """A Service Bus namespace host name such as mynamespace.servicebus.windows.net (a port 1-65535 allowed)."""
    _no_control_characters(value)
    if not _is_namespace(value):
        raise Malformed("must be a host name such as mynamespace.servicebus.windows.net")
    return value


def connection_string(value: str) -> str:
    """A Service Bus connection string: Endpoint=sb://host/ and a shared access key or signature."""
    _no_control_characters(value)
    fields: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, equals, field_value = part.partition("=")
        if not equals or not key.strip():
            raise Malformed("must be a connection string of key=value pairs separated by ';'")
        fields[key.strip().lower()] = field_value.strip()
    endpoint = fields.get("endpoint", "")
    host = endpoint[len("sb://"):].rstrip("/") if endpoint.lower().startswith("sb://") else ""
    if not _is_namespace(host):
        raise Malformed("must hold Endpoint=sb://<namespace host>/")
    has_key = fields.get("sharedaccesskeyname") and fields.get("sharedaccesskey")
    if not has_key and not fields.get("sharedaccesssignature"):
        raise Malformed("must hold SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature")
    return value


def guid(value: str) -> str:
    """A GUID such as a subscription id."""
    _no_control_characters(value)
    if not GUID.fullmatch(value):
        raise Malformed("must be a GUID")
    return value


def client_id(value: str) -> str:
    """The client id (a GUID) of a user-assigned managed identity."""
    try:
        return guid(value)
    except Malformed:
        raise Malformed("must be the client id (a GUID) of a managed identity") from None


def credential_kind(value: str) -> str:
    """The kind of credential Functions uses for an identity-based connection, such as managedidentity."""
    _no_control_characters(value)
    if not _CREDENTIAL.fullmatch(value):
        raise Malformed("must be a credential kind such as managedidentity")
    return value


def resource_group(value: str) -> str:
    """A resource group name: 1-90 letters, digits, _ - . ( ), not ending in '.'."""
    _no_control_characters(value)
    if not RESOURCE_GROUP.fullmatch(value) or value.endswith("."):
        raise Malformed("must be 1-90 letters, digits, _ - . ( ), not ending in '.'")
    return value


def registry_name(value: str) -> str:
    """A container registry name: 5-50 letters or digits."""
    _no_control_characters(value)
    if not REGISTRY.fullmatch(value):
        raise Malformed("must be 5-50 letters or digits")
    return value


def registry_list(value: str) -> frozenset[str]:
    """ALLOWED_REGISTRIES: comma-separated registryName or subscriptionId/resourceGroupName/registryName, lower-cased."""
    _no_control_characters(value)
    entries = [entry.strip() for entry in value.split(",")]
    if not any(entries):
        # Only separators: fail closed, never "no allowlist".
        raise Malformed("holds no registry (only separators); leave it empty to allow every registry")
    if not all(entries):
        raise Malformed("holds an empty entry between commas")
    for entry in entries:
        parts = entry.split("/")
        well_formed = len(parts) == 1 or (
            len(parts) == 3 and GUID.fullmatch(parts[0]) and RESOURCE_GROUP.fullmatch(parts[1]) and not parts[1].endswith(".")
        )
        if not well_formed or not REGISTRY.fullmatch(parts[-1]):
            raise Malformed("entries must be registryName or subscriptionId/resourceGroupName/registryName")
    return frozenset(entry.lower() for entry in entries)


def arm_endpoint(value: str) -> str:
    """A plain scheme://host[:port] (https unless the host is loopback), returned without a trailing slash."""
    _no_control_characters(value)
    match = _ENDPOINT.fullmatch(value)
    rule = "must be a plain scheme://host[:port] such as https://management.azure.com (no user, path, query or fragment)"
    if match is None:
        raise Malformed(rule)
    scheme = match["scheme"].lower()
    host = (match["host"] or "").lower()
    if match["ipv6"] is not None:
        try:
            host = f"[{ipaddress.IPv6Address(match['ipv6']).compressed}]"
        except ValueError:
            raise Malformed(rule) from None
    port = match["port"]
    if port is not None and not (port[0] != "0" and 1 <= int(port) <= 65535):
        raise Malformed("must have a port in 1-65535")
    if scheme not in ("https", "http"):
        raise Malformed(rule)
    if scheme == "http" and not is_loopback(host.strip("[]")):
        raise Malformed("must use https unless the host is loopback")
    endpoint = f"{scheme}://{host}" + (f":{port}" if port else "")
    _same_for_urllib3(endpoint, scheme, host, port, rule)
    return endpoint


def arm_scope(value: str) -> str:
    """An https token scope ending in /.default, such as https://management.azure.com/.default."""
    _no_control_characters(value)
    if not _SCOPE.fullmatch(value):
        raise Malformed("must be an https scope ending in /.default, such as https://management.azure.com/.default")
    return value


def api_version(value: str) -> str:
    """An api-version YYYY-MM-DD, optionally -preview (it goes into the ARM URL's query as it is)."""
    match = _API_VERSION.fullmatch(value)
    try:
        if match is None:
            raise ValueError
        date.fromisoformat(match["date"])
    except ValueError:
        raise Malformed("must be an api-version YYYY-MM-DD, optionally followed by -preview") from None
    return value


def number(*, minimum: float, maximum: float, integer: bool = False, above: bool = False) -> Callable[[str], float]:
    """A parser of a finite decimal number (or integer) in [minimum, maximum], or (minimum, maximum] when `above`."""
    low = f"above {minimum:g}" if above else f"at least {minimum:g}"

    def parse(value: str) -> float:
        kind = "an integer" if integer else "a number"
        if not (_INTEGER if integer else _DECIMAL).fullmatch(value):
            raise Malformed(f"must be {kind} written in decimal digits")
        parsed = int(value) if integer else float(value)
        if not math.isfinite(parsed):
            raise Malformed(f"must be a finite number {low} and at most {maximum:g}")
        if (parsed <= minimum if above else parsed < minimum) or parsed > maximum:
            raise Malformed(f"must be {kind} {low} and at most {maximum:g}")
        return parsed

    parse.__doc__ = f"{'An integer' if integer else 'A number'} {low}, at most {maximum:g}."
    return parse


def ncrontab(value: str) -> str:
    """A six-field NCRONTAB expression ({second} {minute} {hour} {day} {month} {day-of-week}), checked loosely."""
    _no_control_characters(value)
    fields = value.split()
    if len(fields) != 6 or not all(_CRON_FIELD.fullmatch(field) for field in fields):
        raise Malformed("must be a six-field NCRONTAB expression such as '0 */15 * * * *'")
    return " ".join(fields)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: the only hosts plain http may reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_namespace(value: str) -> bool:
    match = _NAMESPACE.fullmatch(value)
    return match is not None and (match["port"] is None or int(match["port"]) <= 65535)


def _no_control_characters(value: str) -> None:
    # Lone surrogates come from environment bytes that are not UTF-8 (os.environ's surrogateescape).
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Malformed("must not hold control characters, line breaks or bytes that are not UTF-8")


def _same_for_urllib3(endpoint: str, scheme: str, host: str, port: str | None, rule: str) -> None:
    """Refuse an endpoint that urllib3, the parser that connects, reads differently (contract §3)."""
    from urllib3.util import parse_url  # requests' own dependency; imported here to keep settings light

    try:
        parsed = parse_url(endpoint)
    except ValueError:
        raise Malformed(rule) from None
    expected = (scheme, host, int(port) if port else None, None)
    if (parsed.scheme, (parsed.host or "").lower(), parsed.port, parsed.auth) != expected:
        raise Malformed(rule)
