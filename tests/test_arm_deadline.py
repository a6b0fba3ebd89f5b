"""ARM_TIMEOUT_SECONDS bounds each request as a whole, connect to last byte (contract §3).

A loopback server drips its answer one byte at a time (the one server here that does not write its
answer in one socket write: dripping is the point), each byte well inside requests' per-read
timeout. The client must hang up at its deadline: the server sees the connection closed long before
its answer is out, after no more bytes than the deadline lets through at the drip rate.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from shared.arm import ArmClient, new_session
from shared.errors import ArmUnavailable
from shared.events import ArchiveRequest
from shared.settings import Settings
from tests.transport import FixedTokens
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, FakeTime

REQUEST = ArchiveRequest(SUB, GROUP, REGISTRY, SEED_RUN, True)
TIMEOUT = 0.5
DRIP = 0.05
"""Seconds between two bytes: ten times inside the per-read timeout, so only a whole-request deadline cuts."""
BODY = b'{"id": "run", "properties": {"provisioningState": "Succeeded", "padding": "' + b"x" * 2000 + b'"}}'


class DripServer:
    """Answers one request by writing `head` at once (if any), then `drip` one byte every DRIP seconds."""

    def __init__(self, head: bytes, drip: bytes) -> None:
        self.head, self.drip = head, drip
        self.dripped = 0
        self.hung_up = threading.Event()
        self.finished = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            try:
                if self.head:
                    conn.sendall(self.head)
                for byte in self.drip:
                    if self._closed_by_peer(conn):
                        self.hung_up.set()
                        break
                    conn.sendall(bytes([byte]))
                    self.dripped += 1
                    time.sleep(DRIP)
            except OSError:  # EPIPE / ECONNRESET: the client is gone
                self.hung_up.set()
        self.finished.set()

    @staticmethod
    def _closed_by_peer(conn: socket.socket) -> bool:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""

    def close(self) -> None:
        self._server.close()


def _head(extra: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


CHUNKED = b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"
CASES = {
    "body": (_head(f"Content-Length: {len(BODY)}\r\n"), BODY),
    "chunked-body": (_head("Transfer-Encoding: chunked\r\n"), CHUNKED),
    "status-line-and-headers": (b"", _head("X-Padding: " + "p" * 2000 + f"\r\nContent-Length: {len(BODY)}\r\n") + BODY),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def dripping(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    """A server dripping one part of its answer."""
    head, drip = CASES[request.param]
    server = DripServer(head, drip)
    yield server
    server.close()


def test_a_dripped_answer_is_cut_at_the_timeout(dripping: DripServer) -> None:
    """ArmUnavailable, and the client hung up when the drip had barely begun.

    At DRIP seconds a byte the deadline lets about TIMEOUT / DRIP bytes through; the bound allows ten
    times that, so a loaded machine starving the client thread for seconds cannot fail the test, while
    a client without the deadline (it reads the whole answer) fails it by far.
    """
    settings = Settings.from_env({"ARM_ENDPOINT": dripping.url, "ARM_TIMEOUT_SECONDS": str(TIMEOUT), "ARM_MAX_ATTEMPTS": "1"})
    fake_time = FakeTime()
    client = ArmClient(new_session(), FixedTokens(), settings, sleep=fake_time.sleep, clock=fake_time.clock)
    with pytest.raises(ArmUnavailable) as caught:
        client.update_run(REQUEST)
    assert (caught.value.retryable, caught.value.attempts) == (True, 1)
    # Wait on what the server observes, not on a clock: it notices the hang-up at its next byte.
    assert dripping.finished.wait(60) and dripping.hung_up.is_set()
    assert dripping.dripped <= 10 * TIMEOUT / DRIP < len(dripping.drip) / 20
