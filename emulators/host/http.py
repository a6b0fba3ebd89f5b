"""The HTTP triggers on a loopback server under host.json's route prefix, with function keys as the host checks them.

A request is matched by method and route template; `authLevel` other than anonymous needs the local key in the
`x-functions-key` header or the `code` query parameter (401 otherwise, before the function runs). The function's
input is built by azure-functions' own `HttpRequestConverter` from an `http` Datum shaped as the host sends it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.http import HttpRequestConverter
from azure.functions.meta import Datum

from emulators.host.index import IndexedFunction
from emulators.host.routes import RouteTemplate
from emulators.server import Exchange, LoopbackServer

__all__ = ["HttpFrontend", "HttpRoute"]

log = logging.getLogger("emulators.host.http")


@dataclass(frozen=True)
class HttpRoute:
    """One `httpTrigger` function: its template, methods (empty: all) and whether it needs a key."""

    function: IndexedFunction
    template: RouteTemplate
    methods: frozenset[str]
    anonymous: bool

    @classmethod
    def of(cls, function: IndexedFunction) -> HttpRoute:
        """The route an httpTrigger binding declares (the function name when it has no route)."""
        trigger = function.trigger
        methods = frozenset(str(method).upper() for method in trigger.get("methods") or ())
        anonymous = str(trigger.get("authLevel", "function")).lower() == "anonymous"
        return cls(function, RouteTemplate.parse(str(trigger.get("route") or function.name)), methods, anonymous)


class _HostExchange(Exchange):
    """The Functions host sends no ARM request ids."""

    request_id_header = None


def _request(exchange: Exchange, route_params: dict[str, str]) -> func.HttpRequest:
    host = exchange.headers.get("Host") or f"{exchange.server.server_name}:{exchange.server.server_port}"
    url = f"http://{host}{exchange.path}"
    query = dict(parse_qsl(urlsplit(exchange.path).query, keep_blank_values=True))
    data = {
        "method": Datum(exchange.method, "string"),
        "url": Datum(url, "string"),
        "headers": {name.lower(): Datum(value, "string") for name, value in exchange.headers.items()},
        "query": {name: Datum(value, "string") for name, value in query.items()},
        "params": {name: Datum(value, "string") for name, value in route_params.items()},
        "body": Datum(exchange.body, "bytes"),
    }
    return HttpRequestConverter.decode(Datum(data, "http"), trigger_metadata={})


class HttpFrontend(LoopbackServer):
    """Serves the app's HTTP triggers; every response leaves in one socket write (LoopbackServer)."""

    handler_class = _HostExchange

    def __init__(self, functions: Iterable[IndexedFunction], *, key: str, route_prefix: str = "api",
                 host: str = "127.0.0.1", port: int = 7071) -> None:
        super().__init__(host=host, port=port)
        self.key = key
        self.prefix = [segment for segment in route_prefix.split("/") if segment]
        self.routes = [HttpRoute.of(function) for function in functions]

    def _authorized(self, exchange: Exchange) -> bool:
        presented = exchange.headers.get("x-functions-key") or exchange.query_value("code") or ""
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.key.encode("utf-8"))

    def handle(self, exchange: Exchange) -> None:
        """Match, check the key, invoke, and write the function's HttpResponse."""
        segments = exchange.raw_path.split("/")[1:]
        if [s.lower() for s in segments[: len(self.prefix)]] != [p.lower() for p in self.prefix]:
            exchange.reply(404)
            return
        below = "/".join(segments[len(self.prefix):])
        matched = [(route, params) for route in self.routes if (params := route.template.match(below)) is not None]
        allowed = [(route, params) for route, params in matched if not route.methods or exchange.method in route.methods]
        if not allowed:  # the host's routes carry their methods as constraints: another method is no route (404)
            exchange.reply(404)
            return
        route, params = allowed[0]
        if not route.anonymous and not self._authorized(exchange):
            exchange.reply(401)
            return
        try:
            response = route.function.call(**{route.function.trigger["name"]: _request(exchange, params)})
        except Exception as exc:  # noqa: BLE001 - the host answers 500 for an unhandled exception, without its text
            log.error("function %s raised %s", route.function.name, type(exc).__name__)
            exchange.reply(500)
            return
        self._write(exchange, response)

    def _write(self, exchange: Exchange, response: func.HttpResponse | None) -> None:
        if response is None:
            exchange.reply(204)
            return
        body = response.get_body() or b""
        headers = {name: value for name, value in response.headers.items() if name.lower() != "content-length"}
        if body and response.mimetype and "content-type" not in {name.lower() for name in headers}:
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}" if response.charset else response.mimetype
        exchange.reply(response.status_code, body, headers)
