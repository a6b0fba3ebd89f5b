"""The one error hierarchy of the app.

    ArchiverError                 code, retryable, http_status
    ├── ConfigurationError        a setting is missing or malformed (names it, never its value)
    ├── EventRejected             the event is refused before ARM is called (outcome "rejected")
    │   ├── InvalidEvent          a field breaks a rule of the contract (names the field)
    │   ├── RegistryNotAllowed    the registry is not in ALLOWED_REGISTRIES
    │   └── NoMatchingRun         an ImagePushed event's image was produced by no run ARM lists
    ├── TokenUnavailable          managed identity gave no token (transient)
    ├── ArmError                  ARM answered, or could not be reached (keeps status, code, request id)
    │   ├── ArmUnavailable        connection error, timeout or unreadable answer (transient)
    │   ├── LroTimeout            an accepted update did not finish within LRO_TIMEOUT_SECONDS (transient)
    │   ├── LroFailed             the update ended Failed or Canceled (final)
    │   └── UnsafeLink            ARM's nextLink is not on ARM_ENDPOINT's origin, or loops (PolicyFailed, final)
    └── PublishFailed             the outcome could not be published (transient)

`retryable` says whether the same event may succeed later; the queue trigger lets Service Bus redeliver
those (contract §5). `http_status` is what the HTTP routes answer (contract §6).
"""

from __future__ import annotations

__all__ = [
    "ArchiverError",
    "ArmError",
    "ArmUnavailable",
    "ConfigurationError",
    "EventRejected",
    "InvalidEvent",
    "LroFailed",
    "LroTimeout",
    "NoMatchingRun",
    "PublishFailed",
    "RegistryNotAllowed",
    "TokenUnavailable",
    "UnsafeLink",
]


class ArchiverError(Exception):
    """Base of every error the app raises on purpose."""

    code: str = "InternalError"
    retryable: bool = False
    http_status: int = 500
    attempts: int = 0
    """ARM PATCH requests sent before the error (contract §4 `attempts`)."""
    reschedule_after: float | None = None
    """Set when ARM asked to wait longer than the retry budget left: worth re-scheduling, not holding."""

    def __init__(self, message: str, *, attempts: int = 0, reschedule_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts
        self.reschedule_after = reschedule_after


class ConfigurationError(ArchiverError):
    """One or more settings are missing or malformed; `settings` lists their names."""

    code = "ConfigurationError"

    def __init__(self, problems: dict[str, str]) -> None:
        self.settings = tuple(problems)
        detail = "; ".join(f"{name}: {why}" for name, why in problems.items())
        super().__init__(f"invalid configuration: {detail}")


class EventRejected(ArchiverError):
    """The event is refused without calling ARM."""

    http_status = 400


class InvalidEvent(EventRejected):
    """A field of the event breaks a rule of contract §2."""

    code = "InvalidEvent"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}" if field else problem)


class RegistryNotAllowed(EventRejected):
    """The registry is not listed in ALLOWED_REGISTRIES."""

    code = "RegistryNotAllowed"
    http_status = 403


class NoMatchingRun(EventRejected):
    """ARM lists no run of the registry whose output images hold the pushed image (contract §2 shape 4)."""

    code = "NoMatchingRun"
    http_status = 404


class TokenUnavailable(ArchiverError):
    """Managed identity could not provide an ARM token."""

    code = "TokenUnavailable"
    retryable = True
    http_status = 503


class ArmError(ArchiverError):
    """ARM refused the request, or every retry failed."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 0,
        reschedule_after: float | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, reschedule_after=reschedule_after)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after
        # ARM's own status passes through the HTTP routes (§6); 5xx stay 5xx.
        self.http_status = status if status is not None and status >= 400 else 502


class ArmUnavailable(ArmError):
    """ARM could not be reached, timed out, or sent an answer that cannot be read."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None, attempts: int = 0) -> None:
        super().__init__(message, code="ArmUnavailable", status=status, request_id=request_id, retryable=True, attempts=attempts)
        self.http_status = 502


class LroTimeout(ArmError):
    """The accepted update was still running when LRO_TIMEOUT_SECONDS ran out."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None, attempts: int = 0) -> None:
        super().__init__(message, code="LroTimeout", status=status, request_id=request_id, retryable=True, attempts=attempts)
        self.http_status = 504


class LroFailed(ArmError):
    """The accepted update ended Failed or Canceled."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None, attempts: int = 0) -> None:
        super().__init__(message, code="LroFailed", status=status, request_id=request_id, retryable=False, attempts=attempts)
        self.http_status = 502


class UnsafeLink(ArmError):
    """A run listing's nextLink cannot be followed: another origin (the token stays home) or a loop."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message, code="PolicyFailed", status=status, request_id=request_id, retryable=False)
        self.http_status = 502


class PublishFailed(ArchiverError):
    """The outcome could not be handed to Service Bus or the outcome file."""

    code = "PublishFailed"
    retryable = True
    http_status = 503
