"""The HTTP adapter (contract §6): request checks, one call of the application service, the status mapping."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared import jsontext
from shared.errors import ArchiverError, ConfigurationError, InvalidEvent, PublishFailed
from shared.events import decode_json
from shared.messaging import bounded_correlation_id, http_id_base, is_image_pushed, is_validation_event
from shared.outcome import Inbound, new_correlation_id
from shared.service import Archiver, Result, Submission
from shared.settings import Settings, missing_settings, unmet_requirements

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "HttpReply",
    "HttpRequestLike",
    "AppResources",
    "archive_events",
    "arm_patch",
    "health",
    "sweep_policy",
    "webhook_options",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 100
SIGNATURE_HEADER = "X-Signature-256"
CORRELATION_HEADER = "x-correlation-id"
_POLICY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$", re.ASCII)
# CloudEvents webhook spec §4.1: the origin is a DNS expression. It is echoed into a response header, so
# only visible ASCII is (a line break would split the answer's headers); blanks, non-ASCII, megabytes are not.
_REQUEST_ORIGIN = re.compile(r"[!-~]{1,255}")


class AppResources(Protocol):
    """What the routes need of the app (shared.runtime.Runtime): its settings and its application service."""

    def settings(self) -> Settings: ...

    def settings_without(self, names: list[str]) -> Settings: ...

    def archiver(self) -> Archiver: ...


class HttpRequestLike(Protocol):
    """The part of azure.functions.HttpRequest the routes read."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def params(self) -> Mapping[str, str]: ...

    @property
    def route_params(self) -> Mapping[str, str]: ...

    def get_body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What a route answers; function_app turns it into an azure.functions.HttpResponse."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def body_bytes(self) -> bytes:
        """The JSON body, or nothing."""
        return b"" if self.body is None else jsontext.encode(self.body)


def health(runtime: AppResources) -> HttpReply:
    """200 when the app can run; 503 naming the missing or malformed settings, never their values."""
    invalid: list[str] = []
    detail: list[str] = []
    try:
        settings = runtime.settings()
    except ConfigurationError as error:
        invalid = list(error.settings)
        detail.append(error.message)  # names and rules only: parsers never quote a value
        settings = runtime.settings_without(invalid)
    unmet = unmet_requirements(settings)
    if unmet or invalid:
        missing = missing_settings(settings)
        detail += [f"{requirement.names[0]}: {requirement.why}" for requirement in unmet]
        return HttpReply(503, {"status": "unhealthy", "missingSettings": missing, "invalidSettings": invalid, "detail": detail})
    return HttpReply(200, {"status": "ok", "outcomeDestination": "file" if settings.outcome_file else "servicebus"})


def webhook_options(request: HttpRequestLike) -> HttpReply:
    """CloudEvents 1.0 webhook abuse-protection handshake (CloudEvents HTTP webhook spec §4)."""
    origin = request.headers.get("WebHook-Request-Origin")
    if not origin:
        return _error_reply(400, "MissingRequestOrigin", "WebHook-Request-Origin header is required", {})
    if not _REQUEST_ORIGIN.fullmatch(origin):
        why = "WebHook-Request-Origin must be a DNS name (1-255 visible ASCII characters)"
        return _error_reply(400, "InvalidRequestOrigin", why, {})
    return HttpReply(200, None, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"})


def archive_events(runtime: AppResources, request: HttpRequestLike) -> HttpReply:
    """POST archive-events: one event, a batch of at most MAX_BATCH, or Event Grid's validation event."""
    admitted = _admit(runtime, request)
    if isinstance(admitted, HttpReply):
        return admitted
    inbound = admitted.inbound
    try:
        event = decode_json(admitted.body)
    except InvalidEvent as error:
        return _single_reply(admitted, Submission(inbound, refused=error))
    validation = _validation_answer(event)
    if validation is not None:
        log.info("answered Event Grid subscription validation")
        return HttpReply(200, validation, admitted.headers)
    if not isinstance(event, list) and is_image_pushed(event):
        # One push can match several runs (or none): answered like a batch, 200 whatever the outcomes,
        # so Event Grid does not retry a push that matched nothing (contract §2 shape 4).
        results = _archive(admitted, [Submission(inbound, event)])
        if isinstance(results, HttpReply):
            return results
        return HttpReply(200, {"outcomes": [result.outcome.body for result in results]}, admitted.headers)
    if not isinstance(event, list):
        return _single_reply(admitted, Submission(inbound, event))
    if not event or len(event) > MAX_BATCH:
        error = InvalidEvent("body", f"a batch must hold 1 to {MAX_BATCH} events, not {len(event)}")
        return _single_reply(admitted, Submission(inbound, refused=error))
    submissions = [
        Submission(
            Inbound(
                source="http", correlation_id=inbound.correlation_id, raw=jsontext.dumps(element),
                id_base=http_id_base(inbound.correlation_id, position) if admitted.caller_correlation else None,
            ),
            element,
        )
        for position, element in enumerate(event)
    ]
    results = _archive(admitted, submissions)
    if isinstance(results, HttpReply):
        return results
    return HttpReply(200, {"outcomes": [result.outcome.body for result in results]}, admitted.headers)


def sweep_policy(runtime: AppResources, request: HttpRequestLike) -> HttpReply:
    """POST archive-policies/{name}/sweep: one policy's sweep now; 200 with its summary, 404 PolicyNotFound."""
    admitted = _admit(runtime, request)
    if isinstance(admitted, HttpReply):
        return admitted
    name = request.route_params.get("name") or ""
    policy = admitted.archiver.settings.archive_policy(name)
    if policy is None:
        shown = f"'{name}'" if _POLICY_NAME.fullmatch(name) else "of that name"  # the route segment is the caller's text
        return _error_reply(404, "PolicyNotFound", f"ARCHIVE_POLICIES holds no policy {shown}", admitted.headers)
    try:
        (summary,) = admitted.archiver.sweep([policy], "http")
    except PublishFailed as error:
        log.error("HTTP sweep %s: %s", admitted.headers[CORRELATION_HEADER], error.message)
        return _error_reply(503, error.code, error.message, {**admitted.headers, "Retry-After": "1"})
    return HttpReply(200, summary.body, admitted.headers)


def arm_patch(runtime: AppResources, request: HttpRequestLike) -> HttpReply:
    """The ARM-compatible mirror of Runs - Update: 200 with the final Run, or ARM's error shape."""
    admitted = _admit(runtime, request)
    if isinstance(admitted, HttpReply):
        return admitted
    try:
        submission = Submission(admitted.inbound, _mirror_event(request, admitted.body, admitted.archiver.settings.arm_api_version))
    except InvalidEvent as error:
        submission = Submission(admitted.inbound, refused=error)
    results = _archive(admitted, [submission])
    if isinstance(results, HttpReply):
        return results
    (result,) = results
    if result.error is not None:
        return _error_reply(result.error.http_status, result.error.code, result.error.message, admitted.headers, result.error)
    return HttpReply(200, result.outcome.body["run"], admitted.headers)


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A write request that passed the checks: from here on it is an event and gets an outcome."""

    archiver: Archiver
    body: bytes
    headers: dict[str, str]
    inbound: Inbound
    caller_correlation: bool
    """The caller sent x-correlation-id: outcome ids derive from it, so a retried request repeats them."""


def _admit(runtime: AppResources, request: HttpRequestLike) -> _Admitted | HttpReply:
    """The checks that run before a request counts as an event: size, settings, signature, content type."""
    # Service Bus takes correlation ids of at most 128 characters; a longer header is cut, and echoed cut.
    given = bounded_correlation_id(request.headers.get(CORRELATION_HEADER))
    correlation_id = given or new_correlation_id()
    headers = {CORRELATION_HEADER: correlation_id}
    body = request.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        return _error_reply(413, "PayloadTooLarge", f"the body exceeds {MAX_BODY_BYTES} bytes", headers)
    try:
        archiver = runtime.archiver()
    except ConfigurationError as error:
        log.error("refusing HTTP request: %s", error.message)
        return _error_reply(500, error.code, error.message, headers)
    secret = archiver.settings.webhook_secret
    if secret is not None and not _signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
        return _error_reply(401, "InvalidSignature", f"{SIGNATURE_HEADER} is missing or does not match the body", headers)
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type and not _is_json(content_type):
        return _error_reply(415, "UnsupportedMediaType", "the body must be JSON (Content-Type application/json)", headers)
    inbound = Inbound(
        source="http", correlation_id=correlation_id, raw=body.decode("utf-8", "replace"),
        id_base=http_id_base(correlation_id, 0) if given else None,
    )
    return _Admitted(archiver, body, headers, inbound, given is not None)


def _signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>, compared in constant time."""
    if not header:
        return False
    scheme, _, provided = header.strip().partition("=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return scheme.lower() == "sha256" and hmac.compare_digest(expected.encode(), provided.strip().lower().encode("utf-8", "replace"))


def _is_json(content_type: str) -> bool:
    return content_type in ("application/json", "text/json") or content_type.endswith("+json")


def _validation_answer(event: Any) -> dict[str, Any] | None:
    candidate = event[0] if isinstance(event, list) and len(event) == 1 else event
    if not is_validation_event(candidate):
        return None
    data = candidate.get("data")
    code = data.get("validationCode") if isinstance(data, Mapping) else None
    return {"validationResponse": code}


def _mirror_event(request: HttpRequestLike, body: bytes, api_version: str) -> dict[str, Any]:
    given = request.params.get("api-version")
    if given is not None and given != api_version:
        raise InvalidEvent("api-version", f"must be {api_version}, not '{given[:40]}'")
    payload = decode_json(body)
    if not isinstance(payload, Mapping):
        raise InvalidEvent("body", 'must be a JSON object such as {"isArchiveEnabled": true}')
    route = request.route_params
    event = {name: route.get(name) for name in ("subscriptionId", "resourceGroupName", "registryName", "runId")}
    event["isArchiveEnabled"] = payload.get("isArchiveEnabled")
    return event


def _single_reply(admitted: _Admitted, submission: Submission) -> HttpReply:
    results = _archive(admitted, [submission])
    if isinstance(results, HttpReply):
        return results
    (result,) = results
    status = 200 if result.error is None else result.error.http_status
    return HttpReply(status, result.outcome.body, _with_retry_after(admitted.headers, result.error))


def _archive(admitted: _Admitted, submissions: list[Submission]) -> list[Result] | HttpReply:
    """The one call of the application service; a failed publish is a 503 the caller may retry (same ids)."""
    try:
        return admitted.archiver.archive(submissions)
    except PublishFailed as error:
        log.error("HTTP request %s: %s", admitted.headers[CORRELATION_HEADER], error.message)
        return _error_reply(503, error.code, error.message, {**admitted.headers, "Retry-After": "1"})


def _error_reply(status: int, code: str, message: str, headers: dict[str, str], error: ArchiverError | None = None) -> HttpReply:
    return HttpReply(status, {"error": {"code": code, "message": message}}, _with_retry_after(headers, error))


def _with_retry_after(headers: dict[str, str], error: ArchiverError | None) -> dict[str, str]:
    """A throttled answer (429) always says when to come back: ARM's Retry-After, else one second."""
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None:
        if error is None or error.http_status != 429:
            return headers
        retry_after = 1.0
    return {**headers, "Retry-After": str(max(int(retry_after + 0.999), 1))}
