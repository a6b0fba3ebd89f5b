"""The ARM client (contract §3) against the ARM emulator: retries, waits, 401 refresh and 201 polling."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import pytest

from emulators import ArmEmulator, Fault, IdentityEmulator
from shared.arm import ArmClient, new_session
from shared.auth import ManagedIdentityTokens
from shared.errors import ArmError, ArmUnavailable, LroFailed, LroTimeout, TokenUnavailable
from shared.events import ArchiveRequest
from shared.settings import Settings
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, FakeTime

REQUEST = ArchiveRequest(SUB, GROUP, REGISTRY, SEED_RUN, True)


@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch, identity: IdentityEmulator, fake_time: FakeTime) -> Any:
    """Builds an ArmClient with real tokens from the identity emulator and virtual waits."""
    for name, value in identity.environ().items():
        monkeypatch.setenv(name, value)

    def build(endpoint: str, **env: str) -> ArmClient:
        settings = Settings.from_env({"ARM_ENDPOINT": endpoint, **env})
        # azure-identity retries a failing identity endpoint as it would in Azure, without its ~4.8 s of backoff.
        tokens = ManagedIdentityTokens.for_settings(None, settings.arm_scope, retry_backoff_factor=0)
        return ArmClient(new_session(), tokens, settings, sleep=fake_time.sleep, clock=fake_time.clock)

    return build


def _patches(arm: ArmEmulator) -> list[dict[str, Any]]:
    return [entry for entry in arm.requests_log if entry["method"] == "PATCH"]


def test_a_200_is_done_with_one_patch(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """The Run comes back as ARM returned it, after one PATCH and no waiting."""
    result = client_for(arm.url).update_run(REQUEST)
    assert result.http_status == 200 and result.attempts == 1
    assert result.run["properties"]["isArchiveEnabled"] is True
    assert result.run == arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)
    assert result.request_id
    assert fake_time.sleeps == []


def test_the_patch_is_the_documented_request(arm: ArmEmulator, client_for: Any) -> None:
    """PATCH {run}?api-version=2019-04-01, JSON body, bearer token and a fresh client request id each time."""
    client = client_for(arm.url)
    client.update_run(REQUEST)
    client.update_run(REQUEST)
    first, second = _patches(arm)
    assert first["path"] == REQUEST.path and first["query"] == {"api-version": "2019-04-01"}
    assert first["body"] == {"isArchiveEnabled": True}
    headers = {k.lower(): v for k, v in first["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("Bearer ")
    ids = {entry["headers"].get("x-ms-client-request-id") or entry["headers"].get("X-Ms-Client-Request-Id") for entry in (first, second)}
    assert len(ids) == 2 and None not in ids


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("3", 3.0), (None, None)],
    ids=["seconds", "absent"],
)
def test_a_throttled_patch_waits_then_retries(arm: ArmEmulator, client_for: Any, fake_time: FakeTime, retry_after: str | None, expected_wait: float | None) -> None:
    """429 waits Retry-After when given, an exponential backoff with jitter when not."""
    arm.script(SEED_RUN, Fault.status(429, retry_after=retry_after))
    result = client_for(arm.url).update_run(REQUEST)
    assert result.attempts == 2
    (wait,) = fake_time.sleeps
    if expected_wait is not None:
        assert wait == expected_wait
    else:
        assert 0.25 <= wait <= 0.5


def test_retry_after_as_an_http_date_is_honoured(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """The HTTP-date form of Retry-After counts from now."""
    import time

    arm.script(SEED_RUN, Fault.status(429, retry_after=formatdate(time.time() + 4, usegmt=True)))
    client_for(arm.url).update_run(REQUEST)
    (wait,) = fake_time.sleeps
    assert 2.5 <= wait <= 4.0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_until_attempts_run_out(arm: ArmEmulator, client_for: Any, fake_time: FakeTime, status: int) -> None:
    """ARM_MAX_ATTEMPTS tries, waits growing exponentially, then a retryable ArmError keeping ARM's details."""
    arm.script(SEED_RUN, *[Fault.status(status)] * 4)
    with pytest.raises(ArmError) as caught:
        client_for(arm.url).update_run(REQUEST)
    error = caught.value
    assert (error.status, error.retryable, error.attempts) == (status, True, 4)
    assert error.request_id and error.code != f"Http{status}"
    assert len(fake_time.sleeps) == 3
    for n, wait in enumerate(fake_time.sleeps, start=1):
        assert 0.25 * 2 ** (n - 1) <= wait <= 0.5 * 2 ** (n - 1)


def test_a_status_without_an_error_body_gets_an_http_code(arm: ArmEmulator, client_for: Any) -> None:
    """ARM sent no error envelope: the code is Http<status>."""
    arm.script(SEED_RUN, Fault.status(409, bare=True))
    with pytest.raises(ArmError) as caught:
        client_for(arm.url).update_run(REQUEST)
    assert (caught.value.code, caught.value.status) == ("Http409", 409)


def test_retry_after_beyond_the_budget_ends_retries_at_once(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """A Retry-After longer than what is left of ARM_RETRY_MAX_SECONDS is a transient failure now."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="120"))
    with pytest.raises(ArmError) as caught:
        client_for(arm.url, ARM_RETRY_MAX_SECONDS="60").update_run(REQUEST)
    assert caught.value.retryable and caught.value.status == 429 and caught.value.retry_after == 120
    assert caught.value.attempts == 1 and fake_time.sleeps == []


def test_the_wait_budget_bounds_total_waiting(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """Waits never add up past ARM_RETRY_MAX_SECONDS, however many attempts are allowed."""
    arm.script(SEED_RUN, *[Fault.status(503)] * 20)
    with pytest.raises(ArmError):
        client_for(arm.url, ARM_MAX_ATTEMPTS="20", ARM_RETRY_MAX_SECONDS="3").update_run(REQUEST)
    assert sum(fake_time.sleeps) <= 3.0 + 1e-9


@pytest.mark.parametrize(("status", "code"), [(400, "BadRequest"), (403, "AuthorizationFailed"), (404, "ResourceNotFound"), (409, "Conflict")])
def test_other_client_errors_are_final_at_once(arm: ArmEmulator, client_for: Any, fake_time: FakeTime, status: int, code: str) -> None:
    """Every 4xx but 408/429 (and a first 401) fails without retrying, keeping ARM's code and request id."""
    arm.script(SEED_RUN, Fault.status(status, error_code=code, message="no"))
    with pytest.raises(ArmError) as caught:
        client_for(arm.url).update_run(REQUEST)
    assert (caught.value.status, caught.value.code, caught.value.retryable, caught.value.attempts) == (status, code, False, 1)
    assert caught.value.message == "no" and caught.value.request_id
    assert fake_time.sleeps == []


def test_an_unknown_run_is_arms_own_404(arm: ArmEmulator, client_for: Any) -> None:
    """A missing run is ResourceNotFound, final."""
    with pytest.raises(ArmError) as caught:
        client_for(arm.url).update_run(ArchiveRequest(SUB, GROUP, REGISTRY, "nosuchrun", True))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (404, "ResourceNotFound", False)


def test_a_401_refreshes_the_token_once_and_retries(arm: ArmEmulator, identity: IdentityEmulator, client_for: Any) -> None:
    """ARM refusing a token triggers exactly one new token; that retry counts as an attempt."""
    client = client_for(arm.url)
    client.update_run(REQUEST)
    identity.revoke_all()
    result = client.update_run(REQUEST)
    assert result.attempts == 2
    assert identity.calls == 2


def test_a_second_401_is_final(arm: ArmEmulator, identity: IdentityEmulator, client_for: Any) -> None:
    """A fresh token refused again is not refreshed a second time."""
    arm.script(SEED_RUN, Fault.status(401), Fault.status(401))
    with pytest.raises(ArmError) as caught:
        client_for(arm.url).update_run(REQUEST)
    assert (caught.value.status, caught.value.retryable, caught.value.attempts) == (401, False, 2)
    assert identity.calls == 2


@pytest.mark.parametrize(
    "fault",
    [Fault.reset(), Fault.reset_mid(), Fault.not_json()],
    ids=["connection-reset", "reset-mid-response", "body-not-json"],
)
def test_broken_answers_are_retried(arm: ArmEmulator, client_for: Any, fault: Fault) -> None:
    """A reset connection, a truncated body or an unreadable 200 is retried like a 503."""
    arm.script(SEED_RUN, fault)
    result = client_for(arm.url).update_run(REQUEST)
    assert result.attempts == 2 and result.run["properties"]["isArchiveEnabled"] is True


def test_a_read_timeout_is_retried(arm: ArmEmulator, client_for: Any) -> None:
    """ARM_TIMEOUT_SECONDS bounds each request; a slow answer is retried."""
    arm.script(SEED_RUN, Fault.delay(1.0))
    result = client_for(arm.url, ARM_TIMEOUT_SECONDS="0.2").update_run(REQUEST)
    assert result.attempts == 2


def test_connection_refused_is_arm_unavailable(client_for: Any, fake_time: FakeTime) -> None:
    """Nothing listening: every attempt fails to connect, then ArmUnavailable (retryable)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ArmUnavailable) as caught:
        client_for(f"http://127.0.0.1:{port}").update_run(REQUEST)
    assert (caught.value.code, caught.value.retryable, caught.value.status, caught.value.attempts) == ("ArmUnavailable", True, None, 4)


def test_identity_endpoint_down_is_token_unavailable(arm: ArmEmulator, identity: IdentityEmulator, client_for: Any) -> None:
    """No token: TokenUnavailable (retryable) and no PATCH sent."""
    identity.fail_next(10, status=500)
    with pytest.raises(TokenUnavailable) as caught:
        client_for(arm.url).update_run(REQUEST)
    assert caught.value.retryable and caught.value.attempts == 0
    assert arm.stats()["patches"] == 0


@pytest.mark.parametrize("via", ["async", "location", "run"], ids=["azure-asyncoperation", "location", "the-run-itself"])
def test_an_accepted_update_is_polled_to_success(arm: ArmEmulator, client_for: Any, fake_time: FakeTime, via: str) -> None:
    """201: follow Azure-AsyncOperation, else Location, else the run; the result is the final GET of the run."""
    arm.set_lro(SEED_RUN, polls=2, via=via)
    result = client_for(arm.url).update_run(REQUEST)
    assert result.http_status == 201 and result.attempts == 1
    assert result.run["properties"]["provisioningState"] == "Succeeded"
    assert result.run == arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)
    assert len(fake_time.sleeps) >= 2
    last = arm.requests_log[-1]
    assert last["method"] == "GET" and last["path"] == REQUEST.path


def test_polling_waits_retry_after(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """The 201's Retry-After sets the polling interval."""
    arm.set_lro(SEED_RUN, polls=2, via="async", retry_after=3)
    client_for(arm.url).update_run(REQUEST)
    assert fake_time.sleeps[0] == 3


@pytest.mark.parametrize("final", ["Failed", "Canceled"])
def test_an_update_that_ends_badly_is_lro_failed(arm: ArmEmulator, client_for: Any, final: str) -> None:
    """provisioningState Failed or Canceled is a final failure."""
    arm.set_lro(SEED_RUN, polls=1, via="async", final=final)
    with pytest.raises(LroFailed) as caught:
        client_for(arm.url).update_run(REQUEST)
    assert (caught.value.code, caught.value.retryable, caught.value.status) == ("LroFailed", False, 201)
    assert final in caught.value.message


def test_an_update_that_never_finishes_is_lro_timeout(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """Polling stops at LRO_TIMEOUT_SECONDS with a retryable LroTimeout."""
    arm.set_lro(SEED_RUN, polls=-1, via="location")
    with pytest.raises(LroTimeout) as caught:
        client_for(arm.url, LRO_TIMEOUT_SECONDS="10").update_run(REQUEST)
    assert caught.value.retryable and caught.value.code == "LroTimeout"
    assert sum(fake_time.sleeps) == pytest.approx(10)


def test_polling_errors_are_retried_within_the_shared_budget(arm: ArmEmulator, client_for: Any, fake_time: FakeTime) -> None:
    """A 503 while polling is retried; the PATCH is not repeated."""
    arm.set_lro(SEED_RUN, polls=2, via="async")
    fake_time.on_sleep = lambda n: arm.script(SEED_RUN, Fault.status(503)) if n == 1 else None
    result = client_for(arm.url).update_run(REQUEST)
    assert result.attempts == 1 and result.run["properties"]["provisioningState"] == "Succeeded"


def test_polling_errors_that_persist_fail_transiently(arm: ArmEmulator, client_for: Any) -> None:
    """Polls that keep failing end as a retryable error, the PATCH counted once."""
    arm.set_lro(SEED_RUN, polls=2, via="run")
    arm.script(SEED_RUN, *[Fault.delay(0)] + [Fault.status(500)] * 10)
    with pytest.raises(ArmError) as caught:
        client_for(arm.url).update_run(REQUEST)
    assert caught.value.retryable and caught.value.status == 500 and caught.value.attempts == 1


def test_a_polling_url_on_another_host_is_never_called(arm: ArmEmulator, identity: IdentityEmulator, client_for: Any) -> None:
    """The token stays on ARM_ENDPOINT's origin: the run itself is polled instead."""
    with ArmEmulator(token_validator=identity.is_valid) as other:
        arm.set_lro(SEED_RUN, polls=2, via="async", poll_host=other.url)
        result = client_for(arm.url).update_run(REQUEST)
        assert result.run["properties"]["provisioningState"] == "Succeeded"
        assert other.stats()["requests"] == 0
    assert [e["method"] for e in arm.requests_log].count("GET") >= 2
