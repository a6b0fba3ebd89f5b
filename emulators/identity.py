"""Managed identity token endpoint, App Service protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).

azure-identity's ManagedIdentityCredential (through MSAL's `_obtain_token_on_app_service`) sends
`GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<scope without /.default>[&client_id=...]`
with headers `X-IDENTITY-HEADER: <IDENTITY_HEADER>` and `Metadata: true`, and expects
`{"access_token", "expires_on": "<epoch seconds>", "resource", "token_type", "client_id"}`.
Tokens are JWT-shaped (unsigned claims `aud`, `exp`, `appid`, `oid`; a random signature part) so that the ARM
emulator can tell principals apart, as ARM's throttling does, even when it runs in another process.
Run `python -m emulators.identity --port N` to serve it standalone (prints one JSON line).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any, Sequence

from emulators.server import Exchange, LoopbackServer

__all__ = ["API_VERSION", "IdentityEmulator", "main"]

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"
_IDENTITY_KEYS = ("client_id", "mi_res_id", "object_id", "principal_id")


class _IdentityExchange(Exchange):
    """App Service's endpoint sends no ARM request ids."""

    request_id_header = None


class IdentityEmulator(LoopbackServer):
    """Issues opaque, unique, expiring tokens; ARM emulators can check them with `is_valid`."""

    handler_class = _IdentityExchange

    def __init__(self, *, header_secret: str | None = None, lifetime: int = 86400,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.header_secret = header_secret or secrets.token_urlsafe(24)
        self.lifetime = lifetime
        self.system_client_id = str(uuid.uuid4())
        self._lock = threading.Lock()
        self._calls = 0
        self._calls_by_client_id: Counter[str | None] = Counter()
        self._expiry: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._failures: list[int] = []

    @property
    def endpoint(self) -> str:
        """The IDENTITY_ENDPOINT value."""
        return self.url + TOKEN_PATH

    @property
    def calls(self) -> int:
        """Token requests received (failed ones included)."""
        with self._lock:
            return self._calls

    @property
    def calls_by_client_id(self) -> dict[str | None, int]:
        """Token requests per `client_id` query value (None: system-assigned)."""
        with self._lock:
            return dict(self._calls_by_client_id)

    @property
    def issued(self) -> set[str]:
        """Every token issued so far."""
        with self._lock:
            return set(self._expiry)

    def is_valid(self, token: str) -> bool:
        """True for an issued, unexpired, unrevoked token (use as ArmEmulator's token_validator)."""
        with self._lock:
            expiry = self._expiry.get(token)
            return expiry is not None and expiry > time.time() and token not in self._revoked

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` token requests (that carry the right secret) with `status` and an error body."""
        with self._lock:
            self._failures.extend([status] * n)

    def revoke_all(self) -> None:
        """Invalidate every token issued so far (later ones stay valid)."""
        with self._lock:
            self._revoked.update(self._expiry)

    def environ(self) -> dict[str, str]:
        """Environment that points ManagedIdentityCredential here."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header_secret}

    def handle(self, exchange: Exchange) -> None:
        """Serve `GET /msi/token`."""
        if exchange.raw_path.rstrip("/") != TOKEN_PATH or exchange.method != "GET":
            exchange.reply(404, {"statusCode": 404, "message": "Not found"})
            return
        client_id = exchange.query_value("client_id")
        with self._lock:
            self._calls += 1
            self._calls_by_client_id[client_id] += 1
        presented = exchange.headers.get("X-IDENTITY-HEADER") or ""
        if not hmac.compare_digest(presented.encode(), self.header_secret.encode()):
            self._error(exchange, 401, "The X-IDENTITY-HEADER header is missing or invalid.")
        elif (failure := self._take_failure()) is not None:
            self._error(exchange, failure, "Injected failure of the managed identity endpoint.")
        elif exchange.query_value("api-version") != API_VERSION:
            self._error(exchange, 400, f"api-version must be {API_VERSION}.")
        elif not exchange.query_value("resource"):
            self._error(exchange, 400, "The 'resource' query parameter is required.")
        else:
            exchange.reply(200, self._issue(exchange.query_value("resource") or "", client_id))

    def _take_failure(self) -> int | None:
        """Pop the next injected failure status, if any."""
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _issue(self, resource: str, client_id: str | None) -> dict[str, Any]:
        """Mint a token and its App Service response body."""
        expires_on = int(time.time()) + self.lifetime
        token = self._mint(resource, client_id or self.system_client_id, expires_on)
        with self._lock:
            self._expiry[token] = expires_on
        return {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id or self.system_client_id,
        }

    @staticmethod
    def _mint(resource: str, client_id: str, expires_on: int) -> str:
        """A unique JWT-shaped token naming the identity (its object id is derived from the client id)."""
        claims = {"aud": resource, "exp": expires_on, "appid": client_id,
                  "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulated-identity:{client_id}"))}

        def part(document: dict[str, Any]) -> str:
            raw = json.dumps(document, separators=(",", ":")).encode("utf-8")
            return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

        return f"{part({'typ': 'JWT', 'alg': 'none'})}.{part(claims)}.{secrets.token_urlsafe(32)}"

    @staticmethod
    def _error(exchange: Exchange, status: int, message: str) -> None:
        """App Service error shape (MSAL reads statusCode and message)."""
        exchange.reply(status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())})


def main(argv: Sequence[str] | None = None) -> int:
    """Serve an IdentityEmulator until SIGTERM/SIGINT; prints its settings as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m emulators.identity", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", default=None, help="IDENTITY_HEADER value (random when omitted)")
    parser.add_argument("--lifetime", type=int, default=86400, help="token lifetime in seconds")
    args = parser.parse_args(argv)
    emulator = IdentityEmulator(header_secret=args.secret, lifetime=args.lifetime, host=args.host, port=args.port)
    return emulator.serve_until_signalled(lambda: json.dumps({"url": emulator.url, **emulator.environ()}))


if __name__ == "__main__":
    sys.exit(main())
