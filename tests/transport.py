"""An in-process requests transport for fast unit tests of the ARM client (httpx MockTransport style).

A handler function receives each PreparedRequest and returns a `Reply` (or raises a requests
exception, as a broken connection would). Every request is recorded. End-to-end paths keep the
loopback emulators; this is for retry, polling and origin rules, where sockets only add time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

__all__ = ["FixedTokens", "MockTransport", "Reply", "mock_session"]


@dataclass(frozen=True)
class FixedTokens:
    """A TokenProvider with one fixed bearer token (one principal): refresh gives the same one."""

    value: str = "t"

    def token(self) -> str:
        return self.value

    def refresh(self, rejected: str) -> str:
        return self.value


@dataclass(frozen=True)
class Reply:
    """What the handler answers: a status, headers and a body (a JSON value, or raw bytes)."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def content(self) -> bytes:
        """The body's bytes."""
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()


class MockTransport(BaseAdapter):
    """A requests adapter answering from `handler`, recording every request it was given."""

    def __init__(self, handler: Callable[[requests.PreparedRequest], Reply]) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> requests.Response:
        self.requests.append(request)
        reply = self.handler(request)
        response = requests.Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict(reply.headers)
        response._content = reply.content()
        response._content_consumed = True  # a body already read, as requests leaves it: iter_content replays it
        response.url = request.url or ""
        response.request = request
        response.reason = "Mock"
        return response

    def close(self) -> None:
        pass

    def methods(self) -> list[str]:
        """The method of each request, in order."""
        return [request.method or "" for request in self.requests]


def mock_session(handler: Callable[[requests.PreparedRequest], Reply]) -> tuple[requests.Session, MockTransport]:
    """A Session whose every http(s) request goes to `handler`."""
    transport = MockTransport(handler)
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport
