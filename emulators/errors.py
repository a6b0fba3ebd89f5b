"""ARM error envelope helpers and the exception the ARM emulator raises to answer with one."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Mapping

__all__ = ["ArmError", "DEFAULT_ERROR_CODES", "arm_error_body", "default_error_code"]

DEFAULT_ERROR_CODES: dict[int, str] = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "AuthorizationFailed",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    409: "Conflict",
    412: "PreconditionFailed",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def default_error_code(status: int) -> str:
    """ARM-style error code for a status (`TooManyRequests` for 429, `Http418` when unnamed)."""
    if status in DEFAULT_ERROR_CODES:
        return DEFAULT_ERROR_CODES[status]
    try:
        return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


def arm_error_body(code: str, message: str) -> dict[str, Any]:
    """The ARM error envelope `{"error": {"code", "message"}}`."""
    return {"error": {"code": code, "message": message}}


class ArmError(Exception):
    """An ARM error response: status, error code, message and extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @property
    def body(self) -> dict[str, Any]:
        """The error envelope to send."""
        return arm_error_body(self.code, self.message)
