"""The process's requests Session, with a deadline on each request as a whole (contract §3).

requests' `timeout` bounds each socket operation, so an answer dripped one byte at a time never
trips it. Here every read of a response, its status line and headers included, gets only what is
left of the request's deadline as its socket timeout, and none at all once the deadline passed.

The Session keeps no cookies, and `prepare` builds each request with requests' own steps but without
the per-request merging of Session settings that a Session from here never varies.
"""

from __future__ import annotations

import http.client
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["USER_AGENT", "deadline", "environment_settings", "new_session", "prepare"]

USER_AGENT = "acr-run-archiver/1.0 python-requests"
_local = threading.local()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every response read on this thread, until the block ends, to `seconds` from now."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def new_session(pool_size: int = 64) -> requests.Session:
    """The process's one Session; its pool is sized so concurrent invocations reuse connections."""
    session = requests.Session()
    # With trust_env on, requests scans the whole environment twice per request for proxy variables
    # and looks for ~/.netrc (a quarter of the ARM call's CPU time, docs/performance.md). ArmClient
    # resolves the proxies and CA bundle once instead (environment_settings); ~/.netrc is not
    # consulted at all, so its credentials can never replace the bearer token.
    session.trust_env = False
    # Retries are ours (bounded by the contract's budget), so urllib3 must not retry on its own.
    adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    # ARM authenticates by the bearer token alone: a cookie it (or anything on the way) sets is neither
    # kept nor sent back, so a hostile answer cannot grow the jar or ride along on later requests.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


def prepare(
    session: requests.Session, method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> requests.PreparedRequest:
    """The request as `session.request` would prepare it for a Session from new_session, for `session.send`.

    Session.request merges the Session's cookies, auth and params and the environment's proxies and CA
    bundle into every request. A Session from new_session has none of the first (no cookies are kept, no
    ~/.netrc, URLs carry no userinfo) and the environment is resolved once (environment_settings), and
    that merging is most of requests' CPU time per request (docs/performance.md). What remains is
    requests' own preparation: method, URL, headers (the Session's, then these), body and the Session's hooks.
    """
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, None)
    merged = CaseInsensitiveDict(session.headers)
    merged.update(headers)
    prepared.prepare_headers(merged)
    prepared.prepare_body(body, None)
    prepared.prepare_hooks(session.hooks)  # a response hook on the Session (the benchmarks read headers by one) still runs
    return prepared


def environment_settings(url: str) -> dict[str, Any]:
    """The proxies and CA bundle requests takes from the environment for `url` (HTTPS_PROXY, NO_PROXY,
    REQUESTS_CA_BUNDLE…), resolved by requests itself, once: every request goes to this one origin."""
    probe = requests.Session()
    try:
        merged = probe.merge_environment_settings(url, {}, None, None, None)
    finally:
        probe.close()
    return {"proxies": merged["proxies"], "verify": merged["verify"]}


class _DeadlineReader(io.RawIOBase):
    """The socket's reader, each read given only the time left before the deadline."""

    def __init__(self, sock: Any, inner: Any, until: float) -> None:
        self._sock, self._inner, self._until = sock, inner, until

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._until - time.monotonic()
        if left <= 0:
            # TimeoutError is socket.timeout: urllib3 turns it into ReadTimeoutError, requests into a Timeout.
            raise TimeoutError("ARM_TIMEOUT_SECONDS reached before the answer was complete")
        self._sock.settimeout(left)
        return self._inner.raw.readinto(buffer)

    def fileno(self) -> int:
        return self._inner.fileno()

    def close(self) -> None:
        self._inner.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading through _DeadlineReader while a deadline is set."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        until = getattr(_local, "deadline", None)
        if until is not None:
            self.fp = io.BufferedReader(_DeadlineReader(sock, self.fp, until))


class _DeadlineHTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose pools (direct or through a proxy) make deadline-aware connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
