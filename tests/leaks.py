"""Finding secrets where they must never be (contract §7): log records and outcomes.

`LeakWatch` is a logging handler on the root logger that keeps the text of every record (message,
traceback, stack) at DEBUG, from every logger. At the end of a test, `find_leaks` looks in those
texts, and in the outcomes the test wrote, for

- every secret the test made known: tokens the identity emulator issued, its `IDENTITY_HEADER`,
  `WEBHOOK_SECRET`, Service Bus keys, computed signatures (`SECRETS.add` / `SECRETS.watch`);
- anything shaped like a credential: `Bearer <token>` other than `Bearer ***`, a JWT (`eyJ…`),
  `SharedAccessKey=<value>`, a SAS `sig=`, `sha256=<64 hex>`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["CREDENTIAL_PATTERNS", "SECRETS", "LeakWatch", "SecretRegistry", "env_secrets", "find_leaks", "outcome_texts"]

MIN_SECRET_LENGTH = 8
"""Shorter values would match ordinary text; no test secret is that short."""
PART_LENGTH = 16
"""A secret of at least PART_LENGTH + 8 characters also leaks when any PART_LENGTH of them in a row appear
(a token cut short "for debugging" is still most of a token)."""

CREDENTIAL_PATTERNS: dict[str, re.Pattern[str]] = {
    # token68 after "Bearer": not the redacted "***", and not a challenge's auth-params (error="...").
    "bearer token": re.compile(r"\bBearer\s+(?!\*\*\*)[A-Za-z0-9\-._~+/]{8,}=*(?![\w=\"-])"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{16,}"),
    "Service Bus key": re.compile(r"SharedAccessKey=(?!\*\*\*|<|SAS_KEY_VALUE)[^;\s\"']+"),
    "SAS signature": re.compile(r"[?&;\s]sig=[A-Za-z0-9%+/=]{16,}"),
    "HMAC signature": re.compile(r"sha256=[0-9a-fA-F]{64}\b"),
}

# Settings and identity variables whose values are secrets; ServiceBusConnection holds a key.
SECRET_SETTINGS = ("WEBHOOK_SECRET", "IDENTITY_HEADER", "MSI_SECRET")
_CONNECTION_KEY = re.compile(r"SharedAccessKey=([^;]+)")


class SecretRegistry:
    """Secrets known to the current test: fixed values, and sources read when the test ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._sources: list[Callable[[], Iterable[str]]] = []

    def add(self, *values: str | None) -> None:
        """Remember values that must never be logged or published."""
        with self._lock:
            self._values.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)

    def watch(self, source: Callable[[], Iterable[str]]) -> None:
        """Read `source` when the test ends (e.g. every token an identity emulator issued)."""
        with self._lock:
            self._sources.append(source)

    def values(self) -> set[str]:
        """Every secret known now."""
        with self._lock:
            values, sources = set(self._values), list(self._sources)
        for source in sources:
            values.update(v for v in source() if v and len(v) >= MIN_SECRET_LENGTH)
        return values

    def clear(self) -> None:
        """Forget everything (between tests)."""
        with self._lock:
            self._values.clear()
            self._sources.clear()


SECRETS = SecretRegistry()
"""The process-wide registry the fixtures and helpers add to; conftest clears it around each test."""


def env_secrets(env: dict[str, str] | os._Environ[str] | None = None) -> set[str]:
    """The secret values in an environment: secret settings and the key of a connection string."""
    env = os.environ if env is None else env
    found = {env.get(name) or "" for name in SECRET_SETTINGS}
    found.update(_CONNECTION_KEY.findall(env.get("ServiceBusConnection") or ""))
    return {value for value in found if len(value) >= MIN_SECRET_LENGTH}


class LeakWatch(logging.Handler):
    """Keeps the full text of every record; notes the environment's secrets as each one is emitted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.secrets: set[str] = set()
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Record the message, its traceback and its stack, as any formatter could print them."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record still gets scanned, raw
            message = f"{record.msg!r} {record.args!r}"
        parts = [f"{record.name}: {message}"]
        if record.exc_info:
            parts.append(self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        self.texts.append("\n".join(parts))
        self.secrets |= env_secrets()


def find_leaks(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """Each (where, text) holding a known secret or a credential-shaped string, described without the secret."""
    known = sorted(set(secrets), key=len, reverse=True)
    leaks: list[str] = []
    for where, text in texts:
        for secret in known:
            part = _leaked_part(secret, text)
            if part is not None:
                what = "a known secret" if part == secret else f"{len(part)} characters of a known secret"
                leaks.append(f"{where}: {what} ({secret[:3]}… {len(secret)} chars) in {_excerpt(text, part)!r}")
        for name, pattern in CREDENTIAL_PATTERNS.items():
            match = pattern.search(text)
            if match:
                leaks.append(f"{where}: a {name} in {_excerpt(text, match.group(0))!r}")
    return leaks


def outcome_texts(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """(where, text) of every outcome file that exists."""
    return [(f"outcome file {path.name}", path.read_text(encoding="utf-8", errors="replace")) for path in paths if path.is_file()]


def _leaked_part(secret: str, text: str) -> str | None:
    """The secret, or the first PART_LENGTH-character piece of a long one, when `text` holds it."""
    if secret in text:
        return secret
    if len(secret) >= PART_LENGTH + 8:
        for start in range(len(secret) - PART_LENGTH + 1):
            piece = secret[start:start + PART_LENGTH]
            if piece in text:
                return piece
    return None


def _excerpt(text: str, found: str) -> str:
    """Up to 60 characters either side of `found`, with `found` itself masked."""
    at = text.find(found)
    return (text[max(at - 60, 0):at] + "<" + "*" * 3 + ">" + text[at + len(found):at + len(found) + 60]).replace("\n", " ")
