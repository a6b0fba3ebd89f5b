"""The ARM call (contract §3): Runs - Update with retries, throttling and 201 polling.

https://learn.microsoft.com/rest/api/containerregistry/runs/update (api-version 2019-04-01)

One request goes through three layers, each one idea: `_send` retries by the RetryPolicy, `_authorized`
refreshes the token once on a 401 (as azure-core's BearerTokenCredentialPolicy.on_challenge wraps the
send), `_transmit` is one HTTP exchange under the ARM_TIMEOUT_SECONDS deadline. Transport exceptions
become ArmUnavailable through one table, `_TRANSPORT_FAILURES`.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import uuid
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import urllib3

from shared.auth import TokenProvider
from shared.errors import ArmError, ArmUnavailable, LroFailed, LroTimeout, TokenUnavailable, UnsafeLink, WritePaced
from shared.events import ArchiveRequest
from shared.pacing import OverBudget, Pacer
from shared.retry import RETRYABLE_STATUSES, RetryBudget, RetryPolicy, parse_retry_after
from shared.settings import Settings
from shared.transport import USER_AGENT, deadline, environment_settings, new_session, prepare
from shared.urls import follow

__all__ = ["MAX_ANSWER_BYTES", "USER_AGENT", "ArmClient", "ArmResult", "environment_settings", "new_session"]

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"Succeeded", "Failed", "Canceled"})
_BODIES = {flag: json.dumps({"isArchiveEnabled": flag}).encode() for flag in (True, False)}

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""Decoded bytes of one ARM answer read at most (a Runs - List page is far smaller). requests inflates
gzip and deflate, so without it ~100 KB on the wire could become gigabytes in memory."""
_READ_CHUNK = 64 * 1024
MAX_PAGES = 1000
"""A listing longer than this is ARM misbehaving: it ends as UnsafeLink rather than running forever."""
_REGISTRY_PATH = re.compile(
    # Resource group names may hold Unicode letters and digits (contract §2); the path is percent-encoded below.
    r"/subscriptions/[0-9A-Fa-f-]{36}/resourceGroups/[-\w.()]{1,90}/providers/Microsoft\.ContainerRegistry/registries/[A-Za-z0-9]{5,50}",
)


class _AnswerTooLarge(requests.RequestException):
    """An answer longer than MAX_ANSWER_BYTES once decoded."""


_TRANSPORT_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (_AnswerTooLarge, f"sent an answer over {MAX_ANSWER_BYTES >> 20} MiB"),
    (requests.Timeout, "timed out"),
    (requests.exceptions.ChunkedEncodingError, "was cut off mid-answer"),
    (requests.exceptions.ContentDecodingError, "sent an answer that cannot be decoded"),
    (requests.ConnectionError, "lost the connection"),
    (requests.RequestException, "failed"),
    # requests wraps these as a rule; a raw one escaping it is no less a transport failure.
    (urllib3.exceptions.HTTPError, "failed in urllib3"),
    (http.client.HTTPException, "sent an answer that is not HTTP"),
)
"""Every foreign exception of one exchange, and what it means, in one place (httpx map_exceptions)."""
_TRANSPORT_TYPES = tuple(kind for kind, _ in _TRANSPORT_FAILURES)


@dataclass(frozen=True, slots=True)
class ArmResult:
    """A finished update: the final Run as ARM returned it."""

    run: dict[str, Any]
    http_status: int
    """Status of the PATCH answer: 200, or 201 when the update was polled."""
    attempts: int
    request_id: str | None
    answer_bytes: int | None = None
    """Size of the answer the Run was decoded from, when known (lets the outcome skip measuring a small Run)."""


class ArmClient:
    """Issues Runs - Update for one ArchiveRequest and returns the final Run, or raises an ArmError."""

    def __init__(
        self,
        session: requests.Session,
        tokens: TokenProvider,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = 0.5,
        poll_interval: float = 0.25,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._policy = policy or RetryPolicy.from_settings(settings, base_seconds=backoff_base, poll_seconds=poll_interval)
        self._timeout = settings.arm_timeout_seconds
        self._query = f"?api-version={settings.arm_api_version}"
        self._environment = environment_settings(settings.arm_endpoint)
        self._pacer = pacer or Pacer(settings.arm_write_reserve, clock=clock, sleep=sleep)

    @property
    def pacer(self) -> Pacer:
        """The pacing of this client's writes (contract §3), shared by every thread using it."""
        return self._pacer

    @property
    def policy(self) -> RetryPolicy:
        """The retry rule every call of this client follows."""
        return self._policy

    def run_url(self, request: ArchiveRequest) -> str:
        """The Runs - Update URL of the request, under ARM_ENDPOINT."""
        return self._settings.arm_endpoint + request.path + self._query

    def update_run(self, request: ArchiveRequest) -> ArmResult:
        """PATCH isArchiveEnabled, poll a 201 to its end, and return the final Run."""
        call = _Call(self._policy.budget())
        url = self.run_url(request)
        response, run = self._send(call, _Request("PATCH", url, _BODIES[request.is_archive_enabled], counted=True))
        request_id = response.headers.get("x-ms-request-id")
        answer_bytes: int | None = len(response.content)
        if response.status_code in (201, 202):
            run, answer_bytes = self._poll(call, url, response), None
        if not isinstance(run, dict):
            message = f"ARM answered {response.status_code} without a Run"
            raise ArmUnavailable(message, request_id=request_id, attempts=call.patches)
        return ArmResult(run, response.status_code, call.patches, request_id, answer_bytes)

    def list_runs(self, registry_path: str, filter: str | None = None, top: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Runs - List of one registry, page by page (contract §8), following nextLink on ARM's origin only.

        `registry_path` is `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}`.
        Pages already yielded stay yielded when a later one fails: a sweep keeps what it listed. Every page
        follows the retry and error rules of §3, under one budget for the whole listing.
        """
        if not _REGISTRY_PATH.fullmatch(registry_path):
            raise ValueError("registry_path is not a registry resource path")
        path = "/".join(quote(segment, safe="") for segment in registry_path.split("/"))
        url = self._settings.arm_endpoint + path + "/runs" + self._query
        if filter:
            url += "&$filter=" + quote(filter, safe="")
        if top is not None:
            url += f"&$top={int(top)}"
        call, seen = _Call(self._policy.budget()), set()
        while True:
            seen.add(url)
            response, body = self._send(call, _Request("GET", url))
            request_id = response.headers.get("x-ms-request-id")
            runs = body.get("value") if isinstance(body, dict) else None
            if not isinstance(runs, list):
                raise ArmUnavailable(f"ARM answered {response.status_code} without a run list", request_id=request_id)
            yield [run for run in runs if isinstance(run, dict)]
            link = body.get("nextLink")
            if not link:
                return
            following = follow(link, url, self._settings.arm_endpoint)
            if following is None:
                raise UnsafeLink("nextLink is not on ARM_ENDPOINT's origin; the listing stops here", request_id=request_id)
            if following in seen or len(seen) >= MAX_PAGES:
                raise UnsafeLink(f"nextLink loops or passes {MAX_PAGES} pages; the listing stops here", request_id=request_id)
            url = following

    def _send(self, call: _Call, request: _Request) -> tuple[requests.Response, Any]:
        """One ARM request under the retry policy; returns the response and its decoded JSON body."""
        tries = _Tries()
        while True:
            try:
                response = self._authorized(call, request, tries)
                if response.status_code < 300:
                    return response, _json_body(response, call)
                failure = _arm_error(response, call)
            except _TRANSPORT_TYPES as error:
                failure = ArmUnavailable(f"ARM {request.method} {_meaning(error)}: {type(error).__name__}", attempts=call.patches)
            except _Unreadable as unreadable:  # a 2xx whose body is not JSON: garbled in transit
                failure = unreadable.error
            if not failure.retryable:
                raise failure
            wait = call.budget.next_wait(tries.sent, failure.retry_after)
            if wait is None:
                long_throttle = failure.retry_after is not None and failure.retry_after > call.budget.remaining
                raise _complete(failure, call, reschedule_after=failure.retry_after if long_throttle else None)
            log.warning(
                "ARM %s %s: %s (%s); retry %d of %d in %.2f s", request.method, request.path, failure.code,
                failure.status or "no answer", tries.sent + 1, call.budget.max_attempts, wait,
            )
            self._sleep(wait)

    def _authorized(self, call: _Call, request: _Request, tries: _Tries) -> requests.Response:
        """Send with the cached token; on a 401, once per request, with a refreshed one.

        The refreshed retry counts as an attempt (contract §3) but is not a retry of the policy: it is
        sent even when the 401 came on the last attempt ARM_MAX_ATTEMPTS allows, so `attempts` can be
        ARM_MAX_ATTEMPTS + 1. A rotated token is the one failure a retry is sure to fix, and a token
        that expired between events must not turn an event into a final failure.
        """
        token = self._token(call, self._tokens.token)
        response = self._transmit(call, request, token, tries)
        if response.status_code != 401 or tries.refreshed:
            return response
        tries.refreshed = True
        response.close()
        log.warning("ARM answered 401 to %s %s; refreshing the token once", request.method, request.path)
        token = self._token(call, lambda: self._tokens.refresh(token))
        return self._transmit(call, request, token, tries)

    def _transmit(self, call: _Call, request: _Request, token: str, tries: _Tries) -> requests.Response:
        """One HTTP exchange, its body read, within ARM_TIMEOUT_SECONDS from connect to the last byte."""
        if request.counted:
            self._paced(call, request)
        tries.sent += 1
        if request.counted:
            call.patches += 1
        response = None
        try:
            with deadline(self._timeout):
                response = self._session.send(
                    prepare(self._session, request.method, request.url, request.body, _headers(token, request.body is not None)),
                    timeout=self._timeout,
                    allow_redirects=False,
                    stream=True,
                    **self._environment,
                )
                _read_bounded(response)  # the whole body, before the deadline ends
        finally:
            if request.counted:  # no answer (a transport failure) frees the slot all the same
                self._pacer.answered(request.bucket, response.status_code if response is not None else None,
                                     response.headers if response is not None else {})
        return response

    def _paced(self, call: _Call, request: _Request) -> None:
        """Wait for this write's pacing turn; a wait past the retry budget left is the long-throttle path (§5)."""
        try:
            call.budget.waited += self._pacer.turn(request.bucket, call.budget.remaining)
        except OverBudget as over:
            call.budget.waited += over.waited
            message = f"ARM's write bucket is nearly empty: pacing would hold this write {over.wait:.1f} s, past its retry budget"
            raise WritePaced(message, wait=over.wait, attempts=call.patches) from None

    @staticmethod
    def _token(call: _Call, fetch: Callable[[], str]) -> str:
        try:
            return fetch()
        except TokenUnavailable as error:
            raise TokenUnavailable(error.message, attempts=call.patches) from None

    def _poll(self, call: _Call, run_url: str, accepted: requests.Response) -> dict[str, Any]:
        """Follow an accepted (201) update until the Run's provisioningState is terminal."""
        timeout = self._settings.lro_timeout_seconds
        deadline_at = self._clock() + timeout
        kind, url = self._poll_target(run_url, accepted)
        retry_after = parse_retry_after(accepted.headers.get("Retry-After"))
        polls = 0
        while True:
            polls += 1
            remaining = deadline_at - self._clock()
            if remaining <= 0:
                raise LroTimeout(
                    f"the update was still running after {timeout:g} s ({polls - 1} polls)",
                    status=accepted.status_code, request_id=accepted.headers.get("x-ms-request-id"), attempts=call.patches,
                )
            # At least MIN_POLL_SECONDS each time (a Retry-After of 0 or less is no interval), so
            # polling never spins; only the last wait is cut short, to end at LRO_TIMEOUT_SECONDS.
            self._sleep(min(self._policy.poll_wait(polls, retry_after), remaining))
            response, body = self._send(call, _Request("GET", url))
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if kind == "run":
                state = _provisioning_state(body)
                if state in TERMINAL_STATES:
                    return _finished(body, state, accepted, call)
            elif _operation_done(kind, response, body):
                # The result is always the run itself; if it is not terminal yet, keep polling it.
                kind, url = "run", run_url
                _, run = self._send(call, _Request("GET", run_url))
                state = _provisioning_state(run)
                if state in TERMINAL_STATES:
                    return _finished(run, state, accepted, call)

    def _poll_target(self, run_url: str, accepted: requests.Response) -> tuple[str, str]:
        """Azure-AsyncOperation, else Location, else the run; never a URL on another origin."""
        for kind, header in (("async", "Azure-AsyncOperation"), ("location", "Location")):
            value = accepted.headers.get(header)
            if not value:
                continue
            url = follow(value, run_url, self._settings.arm_endpoint)
            if url is not None:
                return kind, url
            # The token must stay on ARM_ENDPOINT's origin (contract §3, §7): poll the run instead. The
            # URL itself is not logged: it is hostile input, and could forge log lines.
            log.warning("ignoring %s that is not on ARM_ENDPOINT's origin; polling the run itself", header)
        return "run", run_url


@dataclass(slots=True)
class _Call:
    """State of one update: its shared retry budget and the PATCH requests sent."""

    budget: RetryBudget
    patches: int = 0


@dataclass(slots=True)
class _Tries:
    """State of one request: exchanges sent (its retries and its token refresh) and whether it refreshed."""

    sent: int = 0
    refreshed: bool = False


@dataclass(frozen=True, slots=True)
class _Request:
    """One ARM request; `counted` ones are the writes reported as `attempts` (contract §4)."""

    method: str
    url: str
    body: bytes | None = None
    counted: bool = False
    path: str = field(init=False)
    """The URL without origin and query, for logs."""
    bucket: str = field(init=False)
    """Whose write bucket the request draws on: ARM throttles per subscription (and principal, this process's one)."""

    def __post_init__(self) -> None:
        path = "/" + self.url.split("?", 1)[0].split("/", 3)[-1]
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "bucket", path.split("/", 3)[2].lower() if path.startswith("/subscriptions/") else "")


class _Unreadable(Exception):
    """A 2xx whose body is not JSON; carries the complete error."""

    def __init__(self, error: ArmUnavailable) -> None:
        super().__init__(error.message)
        self.error = error


def _meaning(error: Exception) -> str:
    return next(what for kind, what in _TRANSPORT_FAILURES if isinstance(error, kind))


def _complete(error: ArmError, call: _Call, *, reschedule_after: float | None) -> ArmError:
    """The final error of a request: `error` itself, or when ARM asked for a long wait, one saying so."""
    if reschedule_after is None:
        return error
    return ArmError(
        error.message, code=error.code, status=error.status, request_id=error.request_id, retryable=error.retryable,
        retry_after=error.retry_after, attempts=call.patches, reschedule_after=reschedule_after,
    )


def _headers(token: str, has_body: bool) -> dict[str, str]:
    headers = {"Authorization": "Bearer " + token, "x-ms-client-request-id": str(uuid.uuid4())}
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


def _read_bounded(response: requests.Response) -> None:
    """Read the (decoded) body into `response.content`, or raise _AnswerTooLarge past MAX_ANSWER_BYTES.

    urllib3 inflates at most one chunk at a time, so a compression bomb is cut after about one chunk
    past the bound. requests keeps a read body in `_content`, as its own `content` property does.
    """
    length, encoding = response.headers.get("Content-Length", ""), response.headers.get("Content-Encoding")
    if encoding is None and length.isdigit() and length.isascii() and int(length) <= MAX_ANSWER_BYTES:
        # The hot path: an uncompressed answer of a declared size, which urllib3 reads to exactly that length.
        response.content  # noqa: B018 - reads the body into response._content
        return
    body = bytearray()
    for chunk in response.iter_content(_READ_CHUNK):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            response.close()
            raise _AnswerTooLarge(f"the answer passed {MAX_ANSWER_BYTES} bytes")
    response._content = bytes(body)
    response._content_consumed = True


def _json_body(response: requests.Response, call: _Call) -> Any:
    content = response.content
    if not content:
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # not JSON, digits past Python's limit, nested too deeply
        # No status: the answer is as unusable as a broken connection, and a subscription filter on
        # httpStatus = 200 must not match a failure.
        raise _Unreadable(ArmUnavailable(
            f"ARM answered {response.status_code} with a body that is not JSON",
            request_id=response.headers.get("x-ms-request-id"), attempts=call.patches,
        )) from None


def _arm_error(response: requests.Response, call: _Call) -> ArmError:
    """ARM's error envelope {"error": {"code", "message"}} as an ArmError; Http<status> when it sent none."""
    status = response.status_code
    code, message = f"Http{status}", f"ARM answered {status} {response.reason or ''}".strip()
    try:
        envelope = json.loads(response.content or b"null")
    except (ValueError, RecursionError):
        envelope = None
    error = envelope.get("error") if isinstance(envelope, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
    return ArmError(
        message,
        code=code,
        status=status,
        request_id=response.headers.get("x-ms-request-id"),
        retryable=status in RETRYABLE_STATUSES,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        attempts=call.patches,
    )


def _operation_done(kind: str, response: requests.Response, body: Any) -> bool:
    if kind == "location":
        return response.status_code != 202
    status = body.get("status") if isinstance(body, dict) else None
    return isinstance(status, str) and status.capitalize() in TERMINAL_STATES


def _provisioning_state(run: Any) -> str | None:
    properties = run.get("properties") if isinstance(run, dict) else None
    state = properties.get("provisioningState") if isinstance(properties, dict) else None
    return state if isinstance(state, str) else None


def _finished(run: dict[str, Any], state: str, accepted: requests.Response, call: _Call) -> dict[str, Any]:
    if state == "Succeeded":
        return run
    properties = run.get("properties")
    detail = properties.get("runErrorMessage") if isinstance(properties, dict) else None
    raise LroFailed(
        f"the update ended {state}" + (f": {detail}" if detail else ""),
        status=accepted.status_code,
        request_id=accepted.headers.get("x-ms-request-id"),
        attempts=call.patches,
    )
