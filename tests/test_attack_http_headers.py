"""Attack on the HTTP routes' headers (contract §6, §7): a caller's header is echoed only when it is what it claims to be.

The CloudEvents webhook handshake echoes WebHook-Request-Origin into WebHook-Allowed-Origin. The CloudEvents
webhook spec makes the origin a DNS expression; what is not 1-255 visible ASCII characters (a line break that
would split the answer's headers, characters a response header cannot carry, blanks, 100 KB) is a 400 naming
the header, never an exception and never an echo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.support import Emulators, LazyFunctions, http_request, response_json, start_emulators

HOSTILE_ORIGINS = {
    "crlf-header-split": "evil.example\r\nSet-Cookie: a=b",
    "lone-lf": "evil.example\nX: y",
    "nul": "evil\x00.example",
    "line-separator": "ev\u2028il.example",
    "non-latin-1": "événement.例え",
    "lone-surrogate": "evil\ud800.example",
    "space-inside": "evil example",
    "huge": "e" * 100_000,
}
GOOD_ORIGINS = {
    "event-grid": "eventgrid.azure.net", "single-label": "x", "with-port": "localhost:7071",
    "with-scheme": "https://sender.example", "upper": "EventGrid.Azure.NET",
}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LazyFunctions]:
    with start_emulators(monkeypatch, tmp_path):
        yield LazyFunctions()


def handshake(app: LazyFunctions, origin: str) -> object:
    return app["archive_events_options"](http_request("OPTIONS", "archive-events", headers={"WebHook-Request-Origin": origin}))


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS.values(), ids=HOSTILE_ORIGINS.keys())
def test_a_hostile_request_origin_is_refused_not_echoed(app: LazyFunctions, origin: str) -> None:
    """400 naming WebHook-Request-Origin; no WebHook-Allowed-Origin header at all."""
    response = handshake(app, origin)
    assert response.status_code == 400
    assert "WebHook-Allowed-Origin" not in response.headers
    assert "WebHook-Request-Origin" in response_json(response)["error"]["message"]


@pytest.mark.parametrize("origin", GOOD_ORIGINS.values(), ids=GOOD_ORIGINS.keys())
def test_a_dns_request_origin_is_echoed(app: LazyFunctions, origin: str) -> None:
    """200 allowing exactly that origin at any rate."""
    response = handshake(app, origin)
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == origin


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(origin=st.text(min_size=1, max_size=300))
def test_any_request_origin_is_answered_and_only_a_header_safe_one_echoed(app: LazyFunctions, origin: str) -> None:
    """Whatever the header holds: 200 echoing printable ASCII, or 400; never an exception (the handshake keeps no state)."""
    response = handshake(app, origin)
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        echoed = response.headers["WebHook-Allowed-Origin"]
        assert echoed == origin and echoed.isascii() and echoed.isprintable() and " " not in echoed
