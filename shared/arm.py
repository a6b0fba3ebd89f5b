"""The ARM call (contract §3): Runs - Update with retries, throttling and 201 polling.

https://learn.microsoft.com/rest/api/containerregistry/runs/update (api-version 2019-04-01)
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from shared.auth import TokenProvider
from shared.errors import ArchiverError, ArmError, ArmUnavailable, LroFailed, LroTimeout
from shared.events import ArchiveRequest
from shared.retry import RETRYABLE_STATUSES, RetryBudget, parse_retry_after
from shared.settings import Settings

__all__ = ["ENVIRONMENT_NAMES", "ArmClient", "ArmResult", "environment_settings", "new_session"]

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"Succeeded", "Failed", "Canceled"})
USER_AGENT = "acr-run-archiver/1.0 python-requests"
_BODIES = {flag: json.dumps({"isArchiveEnabled": flag}).encode() for flag in (True, False)}
ENVIRONMENT_NAMES = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)
"""What requests reads from the environment for a request (besides ~/.netrc); the Runtime rebuilds
the ArmClient when one of them changes."""


@dataclass(frozen=True, slots=True)
class ArmResult:
    """A finished update: the final Run as ARM returned it."""

    run: dict[str, Any]
    http_status: int
    """Status of the PATCH answer: 200, or 201 when the update was polled."""
    attempts: int
    request_id: str | None


def new_session(pool_size: int = 64) -> requests.Session:
    """The process's one Session; its pool is sized so concurrent invocations reuse connections."""
    session = requests.Session()
    # With trust_env on, requests scans the whole environment twice per request for proxy variables
    # and looks for ~/.netrc (a quarter of the ARM call's CPU time, docs/performance.md). ArmClient
    # resolves the proxies and CA bundle once instead (environment_settings); ~/.netrc is not
    # consulted at all, so its credentials can never replace the bearer token.
    session.trust_env = False
    # Retries are ours (bounded by the contract's budget), so urllib3 must not retry on its own.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return session


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
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._backoff_base = backoff_base
        self._poll_interval = poll_interval
        self._origin = _origin(settings.arm_endpoint)
        self._timeout = settings.arm_timeout_seconds
        self._query = f"?api-version={settings.arm_api_version}"
        self._environment = environment_settings(settings.arm_endpoint)

    def run_url(self, request: ArchiveRequest) -> str:
        """The Runs - Update URL of the request, under ARM_ENDPOINT."""
        return self._settings.arm_endpoint + request.path + self._query

    def update_run(self, request: ArchiveRequest) -> ArmResult:
        """PATCH isArchiveEnabled, poll a 201 to its end, and return the final Run."""
        call = _Call(RetryBudget(self._settings.arm_max_attempts, self._settings.arm_retry_max_seconds, self._backoff_base))
        url = self.run_url(request)
        try:
            response, run = self._send(call, "PATCH", url, _BODIES[request.is_archive_enabled])
            request_id = response.headers.get("x-ms-request-id")
            if response.status_code in (201, 202):
                run = self._poll(call, url, response)
            if not isinstance(run, dict):
                raise ArmUnavailable(f"ARM answered {response.status_code} without a Run", request_id=request_id)
            return ArmResult(run, response.status_code, call.patches, request_id)
        except ArchiverError as error:
            error.attempts = call.patches
            raise

    def _send(self, call: _Call, method: str, url: str, body: bytes | None = None) -> tuple[requests.Response, Any]:
        """One ARM request with the retry policy; returns the response and its decoded JSON body."""
        attempts = 0
        refreshed = False
        while True:
            token = self._tokens.token()
            attempts += 1
            if method == "PATCH":
                call.patches += 1
            retry_after: float | None = None
            try:
                response = self._session.request(
                    method,
                    url,
                    data=body,
                    headers=_headers(token, body is not None),
                    timeout=self._timeout,
                    allow_redirects=False,
                    **self._environment,
                )
                status = response.status_code
                if status < 300:
                    return response, _json_body(response)
                if status == 401 and not refreshed and attempts < call.budget.max_attempts:
                    refreshed = True
                    log.warning("ARM answered 401 to %s %s; refreshing the token once", method, _path(url))
                    self._tokens.refresh(token)
                    continue
                error = _arm_error(response)
                if status not in RETRYABLE_STATUSES:
                    raise error
                retry_after = error.retry_after
            except requests.RequestException as failure:
                # ConnectionError, Timeout, ChunkedEncodingError (a reset mid-body) and friends.
                error = ArmUnavailable(f"ARM {method} failed: {type(failure).__name__}")
            except ArmUnavailable as unreadable:  # a 2xx whose body is not JSON: garbled in transit
                error = unreadable
            wait = call.budget.next_wait(attempts, retry_after)
            if wait is None:
                if retry_after is not None and retry_after > call.budget.remaining:
                    error.reschedule_after = retry_after
                raise error
            log.warning(
                "ARM %s %s: %s (%s); retry %d of %d in %.2f s",
                method, _path(url), error.code, error.status or "no answer", attempts + 1, call.budget.max_attempts, wait,
            )
            self._sleep(wait)

    def _poll(self, call: _Call, run_url: str, accepted: requests.Response) -> dict[str, Any]:
        """Follow an accepted (201) update until the Run's provisioningState is terminal."""
        deadline = self._clock() + self._settings.lro_timeout_seconds
        kind, url = self._poll_target(run_url, accepted)
        interval = parse_retry_after(accepted.headers.get("Retry-After"))
        polls = 0
        while True:
            polls += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise LroTimeout(
                    f"the update was still running after {self._settings.lro_timeout_seconds:g} s ({polls - 1} polls)",
                    status=accepted.status_code,
                    request_id=accepted.headers.get("x-ms-request-id"),
                )
            wait = interval if interval is not None else min(self._poll_interval * 2 ** min(polls - 1, 3), 2.0)
            self._sleep(min(wait, remaining))
            response, body = self._send(call, "GET", url)
            interval = parse_retry_after(response.headers.get("Retry-After"))
            if kind == "run":
                state = _provisioning_state(body)
                if state in TERMINAL_STATES:
                    return _finished(body, state, accepted)
            elif _operation_done(kind, response, body):
                # The result is always the run itself; if it is not terminal yet, keep polling it.
                kind, url = "run", run_url
                _, run = self._send(call, "GET", run_url)
                state = _provisioning_state(run)
                if state in TERMINAL_STATES:
                    return _finished(run, state, accepted)

    def _poll_target(self, run_url: str, accepted: requests.Response) -> tuple[str, str]:
        """Azure-AsyncOperation, else Location, else the run; never a URL on another origin."""
        for kind, header in (("async", "Azure-AsyncOperation"), ("location", "Location")):
            value = accepted.headers.get(header)
            if not value:
                continue
            url = urljoin(run_url, value)
            if _origin(url) == self._origin:
                return kind, url
            # The token must stay on ARM_ENDPOINT's host (contract §3, §7): poll the run instead.
            log.warning("ignoring %s on another origin (%s); polling the run itself", header, urlsplit(url).hostname)
        return "run", run_url


def environment_settings(url: str) -> dict[str, Any]:
    """The proxies and CA bundle requests takes from the environment for `url` (HTTPS_PROXY, NO_PROXY,
    REQUESTS_CA_BUNDLE…), resolved by requests itself, once: every request goes to this one origin."""
    probe = requests.Session()
    try:
        merged = probe.merge_environment_settings(url, {}, None, None, None)
    finally:
        probe.close()
    return {"proxies": merged["proxies"], "verify": merged["verify"]}


@dataclass(slots=True)
class _Call:
    """State of one update: its shared retry budget and the PATCH requests sent."""

    budget: RetryBudget
    patches: int = 0


def _headers(token: str, has_body: bool) -> dict[str, str]:
    headers = {"Authorization": "Bearer " + token, "x-ms-client-request-id": str(uuid.uuid4())}
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


def _json_body(response: requests.Response) -> Any:
    content = response.content
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        # No status: the answer is as unusable as a broken connection, and a subscription filter on
        # httpStatus = 200 must not match a failure.
        raise ArmUnavailable(
            f"ARM answered {response.status_code} with a body that is not JSON",
            request_id=response.headers.get("x-ms-request-id"),
        ) from None


def _arm_error(response: requests.Response) -> ArmError:
    """ARM's error envelope {"error": {"code", "message"}} as an ArmError; Http<status> when it sent none."""
    status = response.status_code
    code, message = f"Http{status}", f"ARM answered {status} {response.reason or ''}".strip()
    try:
        envelope = json.loads(response.content or b"null")
    except ValueError:
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


def _finished(run: dict[str, Any], state: str, accepted: requests.Response) -> dict[str, Any]:
    if state == "Succeeded":
        return run
    detail = run.get("properties", {}).get("runErrorMessage")
    raise LroFailed(
        f"the update ended {state}" + (f": {detail}" if detail else ""),
        status=accepted.status_code,
        request_id=accepted.headers.get("x-ms-request-id"),
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default_port


def _path(url: str) -> str:
    return urlsplit(url).path
