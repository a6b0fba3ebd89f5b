"""Specification of the ARM emulator's throttling: token buckets per subscription, principal and operation type."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emulators import ArmEmulator, Fault, IdentityEmulator
from emulators.arm import SEED_RUN
from emulators.arm_client import ArmEmulatorClient
from emulators.throttle import BucketSpec, Throttle, ThrottleConfig, operation_of, principal_of
from tests.support import FakeTime

REPO_ROOT = Path(__file__).resolve().parents[1]
SUB, RG, REG, RUN = SEED_RUN
OTHER_SUB = "00000000-0000-0000-0000-000000000001"
AUTH = {"Authorization": "Bearer test-token"}
WRITES_LEFT = "x-ms-ratelimit-remaining-subscription-writes"
READS_LEFT = "x-ms-ratelimit-remaining-subscription-reads"
GLOBAL_WRITES_LEFT = "x-ms-ratelimit-remaining-subscription-global-writes"
GLOBAL_READS_LEFT = "x-ms-ratelimit-remaining-subscription-global-reads"


def throttle(writes: tuple[float, float] = (200, 10), reads: tuple[float, float] = (250, 25), factor: float = 15,
             clock: FakeTime | None = None) -> tuple[Throttle, FakeTime]:
    """An enabled Throttle on a fake clock."""
    time = clock or FakeTime()
    config = ThrottleConfig(enabled=True, writes=BucketSpec(*writes), reads=BucketSpec(*reads), global_factor=factor)
    return Throttle(config, clock=time.clock), time


def jwt(**claims: str) -> str:
    """An unsigned JWT-shaped token carrying `claims`."""
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


def run_url(base: str, run_id: str = RUN, sub: str = SUB) -> str:
    """Runs - Get / Update URL."""
    return (f"{base}/subscriptions/{sub}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/{REG}"
            f"/runs/{run_id}?api-version=2019-04-01")


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A keep-alive session that ignores proxy settings (loopback only)."""
    with requests.Session() as http:
        http.trust_env = False
        yield http


@pytest.fixture
def clock() -> FakeTime:
    """A clock that moves only when told."""
    return FakeTime()


@pytest.fixture
def arm(clock: FakeTime) -> Iterator[ArmEmulator]:
    """An emulator throttling writes at 3 / 1 a second and reads at 4 / 2 a second (global x2), on the fake clock."""
    config = ThrottleConfig(enabled=True, writes=BucketSpec(3, 1), reads=BucketSpec(4, 2), global_factor=2)
    with ArmEmulator(throttle=config, clock=clock.clock) as emulator:
        yield emulator


def patch(session: requests.Session, base: str, headers: dict[str, str] = AUTH, sub: str = SUB) -> requests.Response:
    """Archive the seed run."""
    return session.patch(run_url(base, sub=sub), json={"isArchiveEnabled": True}, headers=headers)


# -- bucket arithmetic ------------------------------------------------------------------------------


def test_a_full_bucket_allows_its_size_then_refuses() -> None:
    """Writes at bucket 200: 200 allowed, counting down to 0, then 429 for a whole second's refill."""
    buckets, _ = throttle()

    decisions = [buckets.charge(SUB, "me", "writes") for _ in range(201)]

    assert [d.allowed for d in decisions] == [True] * 200 + [False]
    assert [d.remaining for d in decisions[:200]] == list(range(199, -1, -1))
    assert decisions[200].remaining == 0 and decisions[200].retry_after == 1
    assert decisions[0].global_remaining == 200 * 15 - 1


@pytest.mark.parametrize(
    ("refill", "elapsed", "expected_tokens"),
    [(10, 0.05, 0), (10, 0.1, 1), (10, 2.55, 25), (10, 1000, 50), (0.5, 3.9, 1), (0.5, 4.0, 2)],
    ids=["half-a-token", "one-token", "twenty-five", "capped-at-size", "slow-refill", "slow-refill-exact"],
)
def test_refill_earns_tokens_at_the_rate_up_to_the_size(refill: float, elapsed: float, expected_tokens: int) -> None:
    """An emptied bucket of 50 earns `refill` tokens a second, never more than its size."""
    buckets, time = throttle(writes=(50, refill))
    for _ in range(50):
        buckets.charge(SUB, "me", "writes")

    time.now += elapsed
    allowed = 0
    while buckets.charge(SUB, "me", "writes").allowed:
        allowed += 1

    assert allowed == expected_tokens


@pytest.mark.parametrize(
    ("refill", "elapsed", "retry_after"),
    [(10, 0, 1), (0.3, 0, 4), (0.3, 0.5, 3), (0.25, 3.99, 1), (0.1, 0, 10)],
    ids=["fast-refill-rounds-up-to-1", "third-of-a-token", "part-earned", "almost-there", "ten-seconds"],
)
def test_retry_after_is_the_whole_seconds_until_a_token(refill: float, elapsed: float, retry_after: int) -> None:
    """Retry-After = ceil((1 - tokens) / refill), at least 1."""
    buckets, time = throttle(writes=(1, refill))
    buckets.charge(SUB, "me", "writes")

    time.now += elapsed
    decision = buckets.charge(SUB, "me", "writes")

    assert not decision.allowed and decision.retry_after == retry_after
    assert decision.headers["Retry-After"] == str(retry_after)


def test_buckets_are_per_principal_and_share_the_subscription_global_bucket() -> None:
    """Two principals have buckets of their own but one global bucket (size x factor) per subscription."""
    buckets, _ = throttle(writes=(2, 1), factor=1.5)  # global: 3

    alice = [buckets.charge(SUB, "alice", "writes") for _ in range(2)]
    bob = [buckets.charge(SUB, "bob", "writes") for _ in range(2)]
    elsewhere = buckets.charge(OTHER_SUB, "bob", "writes")

    assert [d.allowed for d in alice + bob] == [True, True, True, False]
    assert [d.global_remaining for d in alice + bob] == [2, 1, 0, 0]
    assert bob[1].remaining == 1  # refused by the global bucket: bob's own token is not spent
    assert elsewhere.allowed and elsewhere.global_remaining == 2


def test_reads_and_writes_have_separate_buckets() -> None:
    """Spending every write leaves the reads untouched, and the other way round."""
    buckets, _ = throttle(writes=(1, 1), reads=(2, 1))

    write = buckets.charge(SUB, "me", "writes")
    refused = buckets.charge(SUB, "me", "writes")
    read = buckets.charge(SUB, "me", "reads")

    assert write.allowed and not refused.allowed and read.allowed and read.remaining == 1
    assert set(read.headers) == {READS_LEFT, GLOBAL_READS_LEFT}
    assert set(refused.headers) == {WRITES_LEFT, GLOBAL_WRITES_LEFT, "Retry-After"}


def test_a_clock_going_back_earns_nothing() -> None:
    """Time that runs backwards refills no tokens (and later refills count from the latest time seen)."""
    buckets, time = throttle(writes=(1, 1))
    buckets.charge(SUB, "me", "writes")

    time.now -= 100
    assert not buckets.charge(SUB, "me", "writes").allowed
    time.now += 100.5
    assert not buckets.charge(SUB, "me", "writes").allowed
    time.now += 0.5
    assert buckets.charge(SUB, "me", "writes").allowed


def test_throttling_off_decides_nothing_and_configure_refills() -> None:
    """Off (the default) charges nothing; a new configuration starts every bucket full."""
    assert Throttle().charge(SUB, "me", "writes") is None
    buckets, _ = throttle(writes=(1, 1))
    buckets.charge(SUB, "me", "writes")

    buckets.configure(buckets.config)

    assert buckets.charge(SUB, "me", "writes").allowed


@settings(max_examples=300, deadline=None)
@example(size=5, refill=0.2, steps=[(0.0, 1), (3.0, 4)])  # 0.6 + 2 s x 0.2 must make a whole token
@given(
    size=st.integers(1, 20),
    refill=st.sampled_from([0.2, 0.5, 1, 3, 10]),
    steps=st.lists(st.tuples(st.floats(0, 3, allow_nan=False), st.integers(1, 8)), min_size=1, max_size=30),
)
def test_no_schedule_beats_the_bucket_and_retry_after_is_enough(
    size: int, refill: float, steps: list[tuple[float, int]]
) -> None:
    """Under any schedule: allowed <= size + refill x elapsed; Retry-After seconds earn a token, one second less does not."""
    buckets, time = throttle(writes=(size, refill))
    start, allowed = time.now, 0
    for wait, burst in steps:
        time.now += wait
        for _ in range(burst):
            decision = buckets.charge(SUB, "me", "writes")
            allowed += decision.allowed
            assert 0 <= decision.remaining <= size - 1 or not decision.allowed
        assert allowed <= size + refill * (time.now - start) + 1e-6
    refused = buckets.charge(SUB, "me", "writes")
    if not refused.allowed:
        assert 1 <= refused.retry_after <= math.ceil(1 / refill)
        time.now += refused.retry_after - 1
        assert refused.retry_after == 1 or not buckets.charge(SUB, "me", "writes").allowed
        time.now += 1
        assert buckets.charge(SUB, "me", "writes").allowed


@pytest.mark.parametrize(
    ("authorization", "principal"),
    [
        (f"Bearer {jwt(oid='object-1', appid='app-1')}", "object-1"),
        (f"Bearer {jwt(appid='app-1')}", "app-1"),
        (f"bearer {jwt(oid='object-1')}", "object-1"),
        (None, "anonymous"),
        ("Basic abc", "anonymous"),
    ],
    ids=["oid-first", "appid-without-oid", "scheme-any-case", "no-header", "not-bearer"],
)
def test_principal_is_the_tokens_oid_else_appid(authorization: str | None, principal: str) -> None:
    """The caller is the JWT's `oid` claim, else `appid`; no bearer token is 'anonymous'."""
    assert principal_of(authorization) == principal


def test_an_opaque_token_is_one_caller_and_never_kept() -> None:
    """The same opaque token is the same principal; another token another; the token itself is not the name."""
    first, again, other = (principal_of(f"Bearer {token}") for token in ("opaque-a", "opaque-a", "opaque-b"))

    assert first == again != other and "opaque-a" not in first


@pytest.mark.parametrize(("method", "operation"), [("GET", "reads"), ("HEAD", "reads"), ("PATCH", "writes"),
                                                   ("PUT", "writes"), ("POST", "writes"), ("DELETE", "writes")])
def test_writes_are_the_changing_methods(method: str, operation: str) -> None:
    """PUT/PATCH/POST/DELETE write; GET (polls included) reads."""
    assert operation_of(method) == operation


@pytest.mark.parametrize(
    "config",
    [lambda: BucketSpec(0, 1), lambda: BucketSpec(1, 0), lambda: BucketSpec(float("inf"), 1),
     lambda: ThrottleConfig(global_factor=0.5)],
    ids=["empty-bucket", "no-refill", "infinite", "global-below-one"],
)
def test_nonsense_settings_are_refused(config: Callable[[], object]) -> None:
    """Bucket sizes below 1, refill rates of 0, infinities and a global factor below 1 are errors."""
    with pytest.raises(ValueError):
        config()


# -- over HTTP --------------------------------------------------------------------------------------


def test_writes_report_remaining_writes_and_reads_remaining_reads(arm: ArmEmulator, session: requests.Session) -> None:
    """Every write answer carries the -writes headers, every read answer the -reads headers, counting down."""
    writes = [patch(session, arm.url) for _ in range(2)]
    reads = [session.get(run_url(arm.url), headers=AUTH) for _ in range(2)]

    assert [(r.headers[WRITES_LEFT], r.headers[GLOBAL_WRITES_LEFT]) for r in writes] == [("2", "5"), ("1", "4")]
    assert [(r.headers[READS_LEFT], r.headers[GLOBAL_READS_LEFT]) for r in reads] == [("3", "7"), ("2", "6")]
    assert all(READS_LEFT not in r.headers for r in writes) and all(WRITES_LEFT not in r.headers for r in reads)


def test_an_empty_bucket_is_429_too_many_requests_and_changes_nothing(
    arm: ArmEmulator, session: requests.Session, clock: FakeTime
) -> None:
    """The 4th write within a second is 429 TooManyRequests with Retry-After, in ARM's shape; the run is untouched."""
    for _ in range(3):
        assert patch(session, arm.url).status_code == 200
    session.patch(run_url(arm.url), json={"isArchiveEnabled": False}, headers=AUTH)  # refused as well

    refused = session.patch(run_url(arm.url), json={"isArchiveEnabled": False}, headers=AUTH)
    clock.now += int(refused.headers["Retry-After"])
    allowed = patch(session, arm.url)

    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "TooManyRequests" and set(refused.json()["error"]) == {"code", "message"}
    assert refused.headers[WRITES_LEFT] == "0" and GLOBAL_WRITES_LEFT in refused.headers
    assert arm.get_run(SUB, RG, REG, RUN)["properties"]["isArchiveEnabled"] is True
    assert allowed.status_code == 200 and arm.stats()["throttled"] == 2 and arm.stats()["status"]["429"] == 2


def test_polls_count_as_reads(arm: ArmEmulator, session: requests.Session) -> None:
    """Operation polls spend read tokens: the reads bucket of 4 refuses the 5th poll."""
    arm.set_lro(RUN, polls=-1)
    accepted = patch(session, arm.url)
    poll_url = accepted.headers["Azure-AsyncOperation"]

    polls = [session.get(poll_url, headers=AUTH) for _ in range(5)]

    assert accepted.status_code == 201 and accepted.headers[WRITES_LEFT] == "2"
    assert [p.status_code for p in polls] == [200, 200, 200, 200, 429]
    assert [p.headers[READS_LEFT] for p in polls] == ["3", "2", "1", "0", "0"]


def test_errors_and_faults_carry_the_headers_too(arm: ArmEmulator, session: requests.Session) -> None:
    """A 404, a 400 and a scripted 503 still spend a token and report what is left."""
    answers = [
        session.get(run_url(arm.url, "missing"), headers=AUTH),
        session.patch(run_url(arm.url), data="not json", headers={**AUTH, "Content-Type": "application/json"}),
    ]
    arm.script(RUN, Fault.status(503))
    answers.append(session.get(run_url(arm.url), headers=AUTH))

    assert [a.status_code for a in answers] == [404, 400, 503]
    assert answers[0].headers[READS_LEFT] == "3" and answers[1].headers[WRITES_LEFT] == "2"
    assert answers[2].headers[READS_LEFT] == "2"


def test_concurrent_writes_get_exactly_the_bucket(clock: FakeTime) -> None:
    """With the clock frozen, 8 threads sending 25 writes each get exactly the bucket's 120 tokens, never more."""
    config = ThrottleConfig(enabled=True, writes=BucketSpec(120, 1))
    with ArmEmulator(throttle=config, clock=clock.clock) as arm:
        def worker() -> list[int]:
            with requests.Session() as http:
                http.trust_env = False
                return [patch(http, arm.url).status_code for _ in range(25)]

        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(status for result in pool.map(lambda _: worker(), range(8)) for status in result)
        stats = arm.stats()

    assert statuses == {200: 120, 429: 80} and stats["throttled"] == 80 and stats["status"] == {"200": 120, "429": 80}


def test_principals_from_the_identity_emulator_share_a_bucket_per_identity(clock: FakeTime, session: requests.Session) -> None:
    """Two tokens of one managed identity drain one bucket; another identity's token has its own."""
    config = ThrottleConfig(enabled=True, writes=BucketSpec(2, 1))
    with IdentityEmulator() as identity, ArmEmulator(throttle=config, clock=clock.clock) as arm:
        def token(client_id: str | None) -> str:
            params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
            if client_id:
                params["client_id"] = client_id
            answer = session.get(identity.endpoint, params=params,
                                 headers={"X-IDENTITY-HEADER": identity.header_secret, "Metadata": "true"})
            return answer.json()["access_token"]

        first, second, other = token(None), token(None), token("user-assigned")
        statuses = [patch(session, arm.url, {"Authorization": f"Bearer {t}"}).status_code
                    for t in (first, second, second, other)]

    assert first != second
    assert principal_of(f"Bearer {first}") == principal_of(f"Bearer {second}") != principal_of(f"Bearer {other}")
    assert statuses == [200, 200, 429, 200]


def test_throttling_is_off_by_default(session: requests.Session) -> None:
    """A default emulator sends no rate-limit headers and never throttles."""
    with ArmEmulator() as arm:
        answers = [patch(session, arm.url) for _ in range(300)]

    assert {a.status_code for a in answers} == {200}
    assert not any(name.startswith("x-ms-ratelimit") for name in answers[-1].headers)


def test_throttling_switches_through_the_python_and_control_apis(session: requests.Session) -> None:
    """set_throttling (in process or over the control API) switches it and resets the buckets."""
    with ArmEmulator() as arm:
        client = ArmEmulatorClient(arm.url)
        settings_in_force = client.set_throttling(writes=(1, 0.5))
        statuses = [patch(session, arm.url).status_code for _ in range(2)]
        arm.set_throttling(False)
        off = patch(session, arm.url)

    assert settings_in_force == {"enabled": True, "writes": {"size": 1, "refill": 0.5},
                                 "reads": {"size": 250, "refill": 25}, "globalFactor": 15}
    assert statuses == [200, 429] and off.status_code == 200 and WRITES_LEFT not in off.headers


def test_control_api_refuses_nonsense_throttling(session: requests.Session) -> None:
    """Bad settings are a 400 InvalidControlRequest and leave throttling as it was."""
    with ArmEmulator() as arm:
        answers = [session.post(f"{arm.url}/_emulator/throttling", json=body)
                   for body in ({"enabled": "yes"}, {"writes": {"size": 0, "refill": 1}}, {"reads": [1, 2]})]
        config = ArmEmulatorClient(arm.url).throttling()

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert all(a.json()["error"]["code"] == "InvalidControlRequest" for a in answers) and config["enabled"] is False


def test_every_throttled_answer_is_one_socket_write(
    arm: ArmEmulator, session: requests.Session, socket_writes: list[bytes]
) -> None:
    """A 429 with its headers and body leaves in a single write, like every other answer."""
    writes = socket_writes
    answers = [patch(session, arm.url) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429] and len(writes) == 4
    assert writes[3].startswith(b"HTTP/1.1 429 ") and writes[3].endswith(answers[3].content)


def test_arm_module_throttles_from_the_command_line(session: requests.Session) -> None:
    """`python -m emulators.arm --throttle --write-bucket 2/0.01` refuses the third write."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.arm", "--port", "0", "--throttle", "--write-bucket", "2/0.01",
         "--read-bucket", "9/1", "--global-factor", "3"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        assert url, process.stderr.read() if process.stderr else ""
        answers = [patch(session, url) for _ in range(3)]
        config = ArmEmulatorClient(url).throttling()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)

    assert [a.status_code for a in answers] == [200, 200, 429] and int(answers[2].headers["Retry-After"]) >= 90
    assert config == {"enabled": True, "writes": {"size": 2.0, "refill": 0.01}, "reads": {"size": 9.0, "refill": 1.0},
                      "globalFactor": 3.0}
