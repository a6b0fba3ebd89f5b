"""What the ARM client puts on the wire: requests' own preparation, without the Session's per-request merging.

`shared.transport.prepare` builds the request that `Session.request` would build for a Session from
`new_session`, and skips merging cookies, auth, params, hooks and the environment on every request
(docs/performance.md). These tests hold it to that: the same method, URL, headers and body as
requests' own `prepare_request`, and no cookie kept or sent back, whatever ARM sets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.arm import ArmClient
from shared.events import ArchiveRequest
from shared.settings import Settings
from shared.transport import USER_AGENT, new_session, prepare
from tests.transport import FixedTokens
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB

REQUEST = ArchiveRequest(SUB, GROUP, REGISTRY, SEED_RUN, True)
RUN = (
    b'{"id": "run", "name": "' + SEED_RUN.encode()
    + b'", "properties": {"provisioningState": "Succeeded", "isArchiveEnabled": true}}'
)


class CookieServer:
    """Answers every request, on each kept-alive connection, with a Run and cookies for the client's host.

    Records each request's bytes.
    """

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn:
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                pending += chunk
            head, _, rest = pending.partition(b"\r\n\r\n")
            lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            length = lengths[0] if lengths else 0
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            pending = rest[length:]
            answer = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Set-Cookie: session=stolen; Path=/\r\n"
                b"Set-Cookie: ARRAffinity=abc; Domain=127.0.0.1; Path=/; HttpOnly\r\n"
                b"Content-Length: " + str(len(RUN)).encode() + b"\r\n\r\n" + RUN
            )
            conn.sendall(answer)  # one write: headers and body together

    def headers(self, n: int) -> dict[str, str]:
        """The n-th request's headers, names lower-cased."""
        lines = self.requests[n].split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def cookie_server() -> Iterator[CookieServer]:
    server = CookieServer()
    yield server
    server.close()


def test_cookies_arm_sets_are_neither_kept_nor_sent_back(cookie_server: CookieServer) -> None:
    """ARM authenticates by the bearer token alone: its Set-Cookie is ignored, on one connection and the next."""
    session = new_session()
    client = ArmClient(session, FixedTokens("secret-token"), Settings.from_env({"ARM_ENDPOINT": cookie_server.url}))
    for _ in range(3):
        assert client.update_run(REQUEST).http_status == 200
    assert len(cookie_server.requests) == 3
    assert all("cookie" not in cookie_server.headers(n) for n in range(3))
    assert len(session.cookies) == 0
    session.close()


def test_the_patch_carries_the_headers_requests_would_send(cookie_server: CookieServer) -> None:
    """The wire request is the one Session.request sends for the same call, header for header (but the request id)."""
    session = new_session()
    ArmClient(session, FixedTokens("secret-token"), Settings.from_env({"ARM_ENDPOINT": cookie_server.url})).update_run(REQUEST)
    ours = cookie_server.headers(0)
    reference_session = new_session()
    reference_session.request(
        "PATCH", cookie_server.url + REQUEST.path + "?api-version=2019-04-01", data=b'{"isArchiveEnabled": true}',
        headers={"Authorization": "Bearer secret-token", "x-ms-client-request-id": ours["x-ms-client-request-id"],
                 "Content-Type": "application/json"},
    )
    assert ours == cookie_server.headers(1)
    assert ours["user-agent"] == USER_AGENT and ours["authorization"] == "Bearer secret-token"
    assert cookie_server.requests[0].split(b"\r\n", 1)[0] == cookie_server.requests[1].split(b"\r\n", 1)[0]
    assert cookie_server.requests[0].endswith(b'\r\n\r\n{"isArchiveEnabled": true}')
    session.close()
    reference_session.close()


_token = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"), min_size=1, max_size=12)
_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip)
_segment = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="/?#"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "PATCH", "patch"]),
    segments=st.lists(_segment, min_size=1, max_size=4),
    query=st.text(st.sampled_from("abc=&%20+xyz"), max_size=12),
    headers=st.dictionaries(_token, _value, max_size=4),
    body=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_prepare_builds_what_session_prepare_request_builds(
    method: str, segments: list[str], query: str, headers: dict[str, str], body: bytes | None
) -> None:
    """Method, URL (percent-encoding included), merged headers, body and hooks equal requests' own preparation."""
    session = new_session()
    session.hooks["response"].append(lambda response, **_: response)
    url = "https://management.azure.com/" + "/".join(segments) + ("?" + query if query else "")
    ours = prepare(session, method, url, body, headers)
    theirs = session.prepare_request(requests.Request(method, url, data=body, headers=headers))
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.hooks == theirs.hooks and ours.hooks["response"] == session.hooks["response"]
    session.close()
