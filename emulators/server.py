"""Loopback HTTP/1.1 server base shared by the emulators.

Every response leaves in a single socket write (status line, headers and body in one bytes
object) on a TCP_NODELAY socket: split writes meet Nagle's algorithm and the peer's delayed ACK,
which adds ~40 ms per keep-alive request and would make every benchmark measure the emulator.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import sys
import threading
import uuid
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, ClassVar, Mapping, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Body", "Exchange", "LoopbackServer", "MAX_BODY_BYTES"]

Body = bytes | str | dict | list | None
MAX_BODY_BYTES = 8 * 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


def _reason(status: int) -> str:
    """Return the standard reason phrase of an HTTP status (empty when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _encode(body: Body) -> tuple[bytes, str | None]:
    """Encode a response body; dicts and lists become JSON."""
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body, separators=(",", ":")).encode("utf-8"), "application/json; charset=utf-8"


def _segments(path: str) -> list[str]:
    """Split a URL path into percent-decoded segments, ignoring one trailing slash."""
    parts = path.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    return [unquote(part) for part in parts]


class Exchange(BaseHTTPRequestHandler):
    """One request/response exchange on a keep-alive connection, with single-write replies."""

    protocol_version = "HTTP/1.1"
    request_id_header: ClassVar[str | None] = "x-ms-request-id"
    server: _HttpServer

    method: str
    raw_path: str
    segments: list[str]
    query: dict[str, list[str]]
    body: bytes
    sent_status: int | None
    aborted: bool
    truncated: bool
    observer: Callable[[str], None] | None  # told the outcome just before it reaches the client

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default per-request stderr logging."""

    def do_GET(self) -> None:
        """Dispatch GET."""
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = do_GET

    def query_value(self, name: str) -> str | None:
        """Return the first value of a query parameter (exact name), or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def default_headers(self) -> dict[str, str]:
        """Headers added to every reply (a fresh request id by default)."""
        return {self.request_id_header: str(uuid.uuid4())} if self.request_id_header else {}

    def reply(self, status: int, body: Body = None, headers: Mapping[str, str] | None = None) -> None:
        """Send a complete response in one socket write."""
        payload, content_type = _encode(body)
        merged: dict[str, str] = {"Date": formatdate(usegmt=True)}
        if content_type:
            merged["Content-Type"] = content_type
        merged.update(self.default_headers())
        merged.update(headers or {})
        if status in _NO_BODY_STATUSES:
            payload = b""
        else:
            merged["Content-Length"] = str(len(payload))
        if self.close_connection:
            merged["Connection"] = "close"
        elif merged.get("Connection", "").lower() == "close":
            self.close_connection = True
        self.write_raw(self.render_head(status, merged) + payload, status=status)

    def render_head(self, status: int, headers: Mapping[str, str]) -> bytes:
        """Render the status line and headers, ending with the blank line."""
        lines = [f"HTTP/1.1 {status} {_reason(status)}".rstrip()]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write_raw(self, data: bytes, *, status: int | None = None, complete: bool = True) -> None:
        """Write bytes to the client in exactly one write call (`complete=False`: a truncated response)."""
        self.sent_status = status if status is not None else self.sent_status
        self.truncated = self.truncated or not complete
        self._notify()
        self.wfile.write(data)  # wbufsize == 0: an unbuffered writer, i.e. one sendall()

    def abort(self) -> None:
        """Reset the connection (TCP RST) without sending any response."""
        self.aborted = True
        self.close_connection = True
        self._notify()
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # drop the makefile() reference so close() really closes now
            self.connection.close()
        except OSError:
            pass

    @property
    def outcome(self) -> str:
        """How the exchange ended: the status sent, "reset" or "reset_mid"."""
        if self.aborted:
            return "reset"
        if self.truncated:
            return "reset_mid"
        return str(self.sent_status) if self.sent_status is not None else "none"

    def _notify(self) -> None:
        """Report the outcome to the observer before the client can see it (stats stay in step)."""
        if self.observer is not None:
            self.observer(self.outcome)

    def _dispatch(self) -> None:
        """Parse the request line and body, then hand the exchange to the server's app."""
        split = urlsplit(self.path)
        self.method, self.raw_path = self.command, split.path
        self.segments = _segments(split.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.sent_status, self.aborted, self.truncated, self.observer = None, False, False, None
        try:
            self.body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self.reply(400, {"error": {"code": "BadRequest", "message": str(exc)}})
            return
        try:
            self.server.app.handle(self)
        except Exception as exc:  # an emulator bug must not hang the client
            if self.sent_status is None and not self.aborted:
                self.close_connection = True
                message = f"emulator error: {type(exc).__name__}: {exc}"
                self.reply(500, {"error": {"code": "InternalServerError", "message": message}})
            raise

    def _read_body(self) -> bytes:
        """Read the request body by Content-Length (or chunked transfer coding)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit() or int(raw) > MAX_BODY_BYTES:
            raise ValueError(f"invalid Content-Length {raw!r}")
        return self.rfile.read(int(raw))

    def _read_chunked(self) -> bytes:
        """Decode a chunked request body."""
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass  # trailers
                return b"".join(chunks)
            if sum(map(len, chunks)) + size > MAX_BODY_BYTES:
                raise ValueError("request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()


class _HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that sets TCP_NODELAY and tracks accepted connections."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops simultaneous SYNs; the client's retransmit after 1 s outlasts its timeout

    def __init__(self, address: tuple[str, int], handler: type[Exchange], app: LoopbackServer) -> None:
        self.app = app
        self.accepted = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the host (slow where DNS is missing)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def server_activate(self) -> None:
        """Listen on a non-blocking socket: a wake-up with nothing queued (the client gave up) must not block.

        serve_forever accepts once select says the socket is readable; a blocking accept() that finds
        no connection by then would hold the serving thread, and stop() waiting for it, for good.
        Non-blocking, accept raises BlockingIOError, which socketserver drops.
        """
        super().server_activate()
        self.socket.setblocking(False)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection, disable Nagle on it and count it."""
        sock, address = super().get_request()
        sock.setblocking(True)  # the exchange reads and writes the connection as a blocking socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.accepted += 1
            self._open.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        """Forget a finished connection, then close it."""
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that vanish mid-exchange; report anything else."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def reset_accepted(self) -> None:
        """Zero the accepted-connection counter."""
        with self._lock:
            self.accepted = 0

    def close_open(self) -> None:
        """Shut down connections that are still open (idle keep-alive ones)."""
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LoopbackServer:
    """A threaded HTTP/1.1 server on loopback; subclasses implement `handle`."""

    handler_class: ClassVar[type[Exchange]] = Exchange

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _HttpServer((host, port), self.handler_class, self)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        host, port = self._httpd.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        return self._httpd.accepted

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            name = f"{type(self).__name__}-{self._httpd.server_address[1]}"
            # A short poll interval makes stop() (shutdown waits for the next poll) take ~10 ms.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name=name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and release the port."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.close_open()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_signalled(self, banner: Callable[[], str] | None = None) -> int:
        """Start, print `banner()` (the URL by default), serve until SIGTERM or SIGINT, stop; the exit status 0."""
        import signal

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        with self:
            print(banner() if banner else self.url, flush=True)
            while not stop.wait(0.2):
                pass
        return 0

    def handle(self, exchange: Exchange) -> None:
        """Answer one exchange (implemented by each emulator)."""
        raise NotImplementedError
