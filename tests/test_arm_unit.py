"""The ARM client's retry, token-refresh and polling rules (contract §3), on the in-process transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3

from shared.arm import ArmClient
from shared.errors import ArmError, ArmUnavailable, TokenUnavailable
from shared.events import ArchiveRequest
from shared.retry import MIN_POLL_SECONDS
from shared.settings import Settings
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, FakeTime
from tests.transport import MockTransport, Reply, mock_session

REQUEST = ArchiveRequest(SUB, GROUP, REGISTRY, SEED_RUN, True)
ENDPOINT = "https://management.azure.com"
RUN = {"id": REQUEST.path, "name": SEED_RUN, "properties": {"provisioningState": "Succeeded", "isArchiveEnabled": True}}
RUNNING = {**RUN, "properties": {"provisioningState": "Running", "isArchiveEnabled": True}}


class Tokens:
    """Numbered tokens; refresh() issues the next one, or fails once `down` is set."""

    def __init__(self) -> None:
        self.issued, self.refreshes, self.down = 1, 0, False

    def token(self) -> str:
        if self.down:
            raise TokenUnavailable("managed identity gave no token")
        return f"token-{self.issued}"

    def refresh(self, rejected: str) -> str:
        self.refreshes += 1
        self.issued += 1
        return self.token()


def scripted(*replies: Reply | Exception, then: Reply | None = None) -> Callable[[requests.PreparedRequest], Reply]:
    """A handler answering `replies` in order, then `then` (the Run, by default) forever."""
    queue: Iterator[Reply | Exception] = iter(replies)
    last = then or Reply(200, RUN)

    def handler(request: requests.PreparedRequest) -> Reply:
        reply = next(queue, last)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return handler


@pytest.fixture
def client_for(fake_time: FakeTime) -> Callable[..., tuple[ArmClient, MockTransport, Tokens]]:
    """Builds an ArmClient on the in-process transport with virtual waits."""

    def build(handler: Callable[[requests.PreparedRequest], Reply], **env: str) -> tuple[ArmClient, MockTransport, Tokens]:
        session, transport = mock_session(handler)
        tokens = Tokens()
        settings = Settings.from_env({"ARM_ENDPOINT": ENDPOINT, **env})
        return ArmClient(session, tokens, settings, sleep=fake_time.sleep, clock=fake_time.clock), transport, tokens

    return build


def _bearer(request: requests.PreparedRequest) -> str:
    return str(request.headers["Authorization"]).removeprefix("Bearer ")


@pytest.mark.parametrize(
    ("max_attempts", "replies", "attempts"),
    [
        ("1", [Reply(401)], 2),
        ("2", [Reply(503, headers={"Retry-After": "0"}), Reply(401)], 3),
        ("4", [Reply(401)], 2),
    ],
    ids=["401-on-the-only-attempt", "401-on-the-last-attempt", "401-on-the-first-of-four"],
)
def test_a_401_is_retried_once_with_a_new_token_even_on_the_last_attempt(
    client_for: Callable[..., Any], max_attempts: str, replies: list[Reply], attempts: int
) -> None:
    """The refreshed retry is always sent and counts as an attempt, so attempts may reach ARM_MAX_ATTEMPTS + 1."""
    client, transport, tokens = client_for(scripted(*replies), ARM_MAX_ATTEMPTS=max_attempts)
    result = client.update_run(REQUEST)
    assert result.attempts == attempts == len(transport.requests)
    assert tokens.refreshes == 1
    assert _bearer(transport.requests[-1]) == "token-2" != _bearer(transport.requests[-2])


def test_a_failure_after_the_refreshed_retry_on_the_last_attempt_ends_the_request(client_for: Callable[..., Any]) -> None:
    """The refresh adds one exchange, not a new round of retries."""
    client, transport, tokens = client_for(scripted(Reply(401), Reply(503)), ARM_MAX_ATTEMPTS="1")
    with pytest.raises(ArmError) as caught:
        client.update_run(REQUEST)
    assert (caught.value.status, caught.value.retryable, caught.value.attempts) == (503, True, 2)
    assert len(transport.requests) == 2 and tokens.refreshes == 1


def test_a_refresh_that_gets_no_token_is_token_unavailable_counting_the_patch(client_for: Callable[..., Any]) -> None:
    """The identity endpoint failing at refresh time: TokenUnavailable, built with the PATCH already sent."""
    client, transport, tokens = client_for(scripted(Reply(401)))

    def refuse(rejected: str) -> str:
        raise TokenUnavailable("managed identity gave no token")

    tokens.refresh = refuse  # type: ignore[method-assign]
    with pytest.raises(TokenUnavailable) as caught:
        client.update_run(REQUEST)
    assert (caught.value.attempts, caught.value.retryable) == (1, True)


def test_retry_after_of_every_poll_is_honoured(client_for: Callable[..., Any], fake_time: FakeTime) -> None:
    """Each poll waits the Retry-After of the answer before it, not only the first one."""
    operation = "https://management.azure.com/operations/1?api-version=2019-04-01"
    replies = [
        Reply(201, RUNNING, {"Azure-AsyncOperation": operation, "Retry-After": "3"}),
        Reply(200, {"status": "InProgress"}, {"Retry-After": "5"}),
        Reply(200, {"status": "InProgress"}, {"Retry-After": "7"}),
        Reply(200, {"status": "InProgress"}),
        Reply(200, {"status": "Succeeded"}),
    ]
    client, transport, _ = client_for(scripted(*replies))
    result = client.update_run(REQUEST)
    assert result.http_status == 201 and result.run == RUN
    assert fake_time.sleeps == [3.0, 5.0, 7.0, 2.0]  # the fourth poll: no Retry-After, the default for poll 4
    assert [r.url for r in transport.requests[1:5]] == [operation] * 4


@pytest.mark.parametrize("retry_after", ["-1", "0", "-0.5", "nan", "1e308", "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"],
                         ids=["negative", "zero", "negative-fraction", "nan", "huge", "absurd-date"])
def test_an_unusable_retry_after_on_polls_never_spins(client_for: Callable[..., Any], fake_time: FakeTime, retry_after: str) -> None:
    """Polls keep the default interval and the 0.1 s floor; the number of GETs stays that of a normal poll."""
    accepted = Reply(201, RUNNING, {"Retry-After": retry_after})
    client, transport, _ = client_for(scripted(accepted, then=Reply(200, RUNNING, {"Retry-After": retry_after})), LRO_TIMEOUT_SECONDS="10")
    with pytest.raises(ArmError) as caught:
        client.update_run(REQUEST)
    assert caught.value.code == "LroTimeout"
    gets = transport.methods().count("GET")
    assert all(wait >= MIN_POLL_SECONDS for wait in fake_time.sleeps[:-1])
    assert gets == len(fake_time.sleeps) <= 10 / MIN_POLL_SECONDS
    assert fake_time.sleeps[:4] == [0.25, 0.5, 1.0, 2.0]


def test_a_polling_url_on_http_at_an_https_endpoints_host_and_port_is_refused(client_for: Callable[..., Any]) -> None:
    """The scheme is part of the origin: http://management.azure.com:443 is not https://management.azure.com."""
    for header in ("Azure-AsyncOperation", "Location"):
        foreign = "http://management.azure.com:443/operations/1?api-version=2019-04-01"
        client, transport, _ = client_for(scripted(Reply(201, RUNNING, {header: foreign})))
        client.update_run(REQUEST)
        assert all(str(r.url).startswith("https://management.azure.com/") for r in transport.requests)
        assert len(transport.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectTimeout("connect"), requests.ReadTimeout("read"), requests.ConnectionError("reset"),
        requests.exceptions.ChunkedEncodingError("cut"), requests.exceptions.ContentDecodingError("gzip"),
        requests.exceptions.SSLError("tls"), requests.RequestException("other"),
        urllib3.exceptions.ProtocolError("raw"), __import__("http.client").client.IncompleteRead(b""),
    ],
    ids=["connect-timeout", "read-timeout", "connection", "chunked", "decoding", "tls", "request", "urllib3-raw", "http-client-raw"],
)
def test_every_transport_failure_is_arm_unavailable_and_retried(client_for: Callable[..., Any], failure: Exception) -> None:
    """One table maps the transport's exceptions: each is retried, then ArmUnavailable with the attempts made."""
    client, transport, _ = client_for(scripted(failure, failure, failure), ARM_MAX_ATTEMPTS="3")
    with pytest.raises(ArmUnavailable) as caught:
        client.update_run(REQUEST)
    error = caught.value
    assert (error.code, error.retryable, error.status, error.attempts) == ("ArmUnavailable", True, None, 3)
    assert type(failure).__name__ in error.message
    client2, _, _ = client_for(scripted(failure))
    assert client2.update_run(REQUEST).attempts == 2


@pytest.mark.parametrize(
    "body",
    [b"<html>", b"[" * 100_000 + b"]" * 100_000, b"1" * 5000, b'{"id": '],
    ids=["html", "nested-too-deep", "digits-past-the-limit", "truncated"],
)
def test_a_2xx_that_is_not_json_is_retried_as_unavailable(client_for: Callable[..., Any], body: bytes) -> None:
    """An unreadable success is retried like a broken connection; it never escapes as an exception of ours."""
    client, _, _ = client_for(scripted(Reply(200, raw=body), Reply(200, raw=body)), ARM_MAX_ATTEMPTS="2")
    with pytest.raises(ArmUnavailable) as caught:
        client.update_run(REQUEST)
    assert caught.value.attempts == 2 and caught.value.status is None


def test_a_long_throttle_is_built_with_reschedule_after(client_for: Callable[..., Any], fake_time: FakeTime) -> None:
    """Retry-After beyond the budget left: the error carries attempts and reschedule_after from its construction."""
    client, _, _ = client_for(scripted(Reply(503, headers={"Retry-After": "2"}), Reply(429, headers={"Retry-After": "600"})))
    with pytest.raises(ArmError) as caught:
        client.update_run(REQUEST)
    error = caught.value
    assert (error.status, error.attempts, error.reschedule_after, error.retry_after, error.retryable) == (429, 2, 600.0, 600.0, True)
    assert fake_time.sleeps == [2.0]


def test_only_the_patch_counts_as_an_attempt(client_for: Callable[..., Any]) -> None:
    """Polls and their retries never count as attempts (contract §4 `attempts` is ARM PATCH requests)."""
    replies = [Reply(201, RUNNING), Reply(503, headers={"Retry-After": "0"}), Reply(500, headers={"Retry-After": "0"}), Reply(200, RUN)]
    client, transport, _ = client_for(scripted(*replies))
    result = client.update_run(REQUEST)
    assert result.attempts == 1 and transport.methods() == ["PATCH", "GET", "GET", "GET"]


def test_a_token_lost_while_polling_reports_the_patch_sent(client_for: Callable[..., Any], fake_time: FakeTime) -> None:
    """TokenUnavailable during polling is built with attempts = 1: the update was sent."""
    client, _, tokens = client_for(scripted(Reply(201, RUNNING)))
    fake_time.on_sleep = lambda n: setattr(tokens, "down", True)
    with pytest.raises(TokenUnavailable) as caught:
        client.update_run(REQUEST)
    assert caught.value.attempts == 1


@pytest.mark.parametrize("retry_after", ["-5", "soon", "1e308", "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"],
                         ids=["negative", "garbage", "huge", "absurd-date"])
def test_an_unusable_retry_after_on_a_throttled_patch_is_the_backoff(client_for: Callable[..., Any], fake_time: FakeTime,
                                                                     retry_after: str) -> None:
    """The retry waits the jittered backoff, as without the header, and the error never escapes as a crash."""
    client, _, _ = client_for(scripted(Reply(429, headers={"Retry-After": retry_after})))
    assert client.update_run(REQUEST).attempts == 2
    (wait,) = fake_time.sleeps
    assert 0.25 <= wait <= 0.5
