"""Scripted faults the ARM emulator injects before answering a request for a run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Mapping, get_args

from emulators.errors import arm_error_body, default_error_code
from emulators.server import Exchange

__all__ = ["Fault", "FaultKind"]

FaultKind = Literal["status", "reset", "reset_mid", "delay", "not_json", "truncated"]
_PARTIAL_BODY = b'{"properties":{"provisioningState":"Succ'
_MISSING_BYTES = 512


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build it with the class-method constructors."""

    kind: FaultKind
    code: int = 0
    retry_after: str | None = None
    error_code: str | None = None
    message: str | None = None
    bare: bool = False
    seconds: float = 0.0

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: str | int | None = None,
        error_code: str | None = None,
        message: str | None = None,
        bare: bool = False,
    ) -> Fault:
        """Answer `code` with an ARM error body (empty when `bare`), plus `Retry-After` if given."""
        after = None if retry_after is None else str(retry_after)
        return cls("status", code=code, retry_after=after, error_code=error_code, message=message, bare=bare)

    @classmethod
    def reset(cls) -> Fault:
        """Reset the connection (TCP RST) without any response."""
        return cls("reset")

    @classmethod
    def reset_mid(cls) -> Fault:
        """Send a 200 head promising more body than is sent, a partial body, then close."""
        return cls("reset_mid")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep `seconds`, then answer normally."""
        return cls("delay", seconds=float(seconds))

    @classmethod
    def not_json(cls) -> Fault:
        """Answer 200 with an HTML body."""
        return cls("not_json")

    @classmethod
    def truncated(cls) -> Fault:
        """Answer a complete 200 `application/json` response whose JSON body is cut short.

        Unlike `reset_mid`, the HTTP framing is intact (Content-Length matches): only the JSON is broken.
        """
        return cls("truncated")

    def to_dict(self) -> dict[str, Any]:
        """Control-API form, e.g. {"kind": "status", "code": 429, "retryAfter": "1"}."""
        data: dict[str, Any] = {"kind": self.kind}
        if self.kind == "status":
            data["code"] = self.code
            optional = {"retryAfter": self.retry_after, "errorCode": self.error_code, "message": self.message}
            data.update({key: value for key, value in optional.items() if value is not None})
            if self.bare:
                data["bare"] = True
        if self.kind == "delay":
            data["seconds"] = self.seconds
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Parse the control-API form; raises ValueError when malformed."""
        kind = data.get("kind")
        if kind == "status":
            code = data.get("code")
            if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
                raise ValueError("status fault needs an integer 'code' between 100 and 599")
            return cls.status(
                code,
                retry_after=data.get("retryAfter"),
                error_code=data.get("errorCode"),
                message=data.get("message"),
                bare=bool(data.get("bare", False)),
            )
        if kind == "delay":
            seconds = data.get("seconds")
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                raise ValueError("delay fault needs a non-negative number 'seconds'")
            return cls.delay(seconds)
        if kind in get_args(FaultKind):
            return cls(kind)
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(get_args(FaultKind))}")

    def answer(self, exchange: Exchange) -> bool:
        """Perform the fault; True when it ended the exchange (a delay lets it continue)."""
        if self.kind == "delay":
            time.sleep(self.seconds)
            return False
        if self.kind == "reset":
            exchange.abort()
        elif self.kind == "reset_mid":
            self._send_truncated(exchange)
        elif self.kind == "not_json":
            exchange.reply(200, b"<html>oops</html>", {"Content-Type": "text/html"})
        elif self.kind == "truncated":
            exchange.reply(200, _PARTIAL_BODY, {"Content-Type": "application/json; charset=utf-8"})
        else:
            self._send_status(exchange)
        return True

    def _send_status(self, exchange: Exchange) -> None:
        """Answer with the scripted status."""
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        if self.bare:
            exchange.reply(self.code, b"", headers)
            return
        code = self.error_code or default_error_code(self.code)
        message = self.message or f"Injected fault: HTTP {self.code} {code}."
        exchange.reply(self.code, arm_error_body(code, message), headers)

    @staticmethod
    def _send_truncated(exchange: Exchange) -> None:
        """Write a head with a too-large Content-Length and part of the body, then close."""
        exchange.close_connection = True
        headers = dict(exchange.default_headers())
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Content-Length"] = str(len(_PARTIAL_BODY) + _MISSING_BYTES)
        exchange.write_raw(exchange.render_head(200, headers) + _PARTIAL_BODY, status=200, complete=False)

