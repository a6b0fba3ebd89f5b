"""The origin rule for URLs that ARM hands back (contract §3, §7): polling URLs and nextLink.

The token may only travel to ARM_ENDPOINT's scheme, host and port. The judge is the parser that
connects (requests prepares the URL, urllib3 parses it to pick the connection pool), and a URL is
refused outright when urllib.parse reads it differently, or when it holds anything a parser could
read two ways: a backslash, whitespace, control or non-ASCII characters, userinfo, a port that is
not plain digits. A URL no parser can use is simply not same-origin: never an exception.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

import requests
from requests.models import PreparedRequest
from urllib3.util import parse_url

__all__ = ["Origin", "follow", "origin", "same_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What ARM sends: printable ASCII without a backslash (space, tab, CR/LF, DEL and every non-ASCII
# character, IDN included, fall outside 0x21-0x7E).
_PRINTABLE = re.compile(r"[!-\[\]-~]+")
# scheme://host[:port]/…: a DNS name or IPv4 literal, or an IPv6 literal in brackets; the port plain
# digits without a leading zero. No '@', no '%', so no userinfo and no percent-encoded host.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_AUTHORITY = re.compile(rf"(?i)(https?)://({_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::([1-9][0-9]{{0,4}}))?(?=[/?#]|$)")


class Origin(NamedTuple):
    """Scheme, host and port a URL connects to (host lower-case, IPv6 without brackets)."""

    scheme: str
    host: str
    port: int


def origin(url: str) -> Origin | None:
    """The origin both parsers agree `url` connects to, or None when they differ or cannot use it."""
    if not isinstance(url, str) or not _PRINTABLE.fullmatch(url):
        return None
    strict = _AUTHORITY.match(url)  # no userinfo can pass it: '@' is not in its alphabet
    if strict is None:
        return None
    try:
        prepared = PreparedRequest()
        prepared.prepare_url(url, None)
        connected = parse_url(prepared.url or "")
        split = urlsplit(url)
        split_port = split.port
    except (requests.RequestException, ValueError, UnicodeError):  # InvalidURL, LocationParseError, bad port
        return None
    views = {
        _normalise(strict.group(1), strict.group(2), int(strict.group(3)) if strict.group(3) else None),
        _normalise(connected.scheme, connected.host, connected.port),
        _normalise(split.scheme, split.hostname, split_port),
    }
    if len(views) != 1:
        return None
    (agreed,) = views
    return agreed


def same_origin(url: str, endpoint: str) -> bool:
    """True when `url` connects to exactly `endpoint`'s scheme, host and port."""
    target = origin(url)
    return target is not None and target == origin(endpoint)


def follow(reference: str, base: str, endpoint: str) -> str | None:
    """The absolute URL a header such as Location points to, resolved against `base`, when it is on
    `endpoint`'s origin; None otherwise. The raw reference is judged too: urljoin silently drops tabs
    and newlines, which would turn a URL two parsers read differently into one they agree on."""
    if not isinstance(reference, str) or not _PRINTABLE.fullmatch(reference):
        return None
    try:
        url = urljoin(base, reference)
    except ValueError:  # urllib.parse refuses broken IPv6 brackets, for one
        return None
    return url if same_origin(url, endpoint) else None


def _normalise(scheme: str | None, host: str | None, port: int | None) -> Origin | None:
    scheme = (scheme or "").lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is None or not host:
        return None
    return Origin(scheme, host.lower().strip("[]"), port if port is not None else default)
