"""Runs - List (contract §3, §8): pages, nextLink on ARM's origin only, the same retry and error rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.arm import ArmClient
from shared.errors import ArmError, ArmUnavailable, UnsafeLink
from shared.settings import Settings
from tests.support import GROUP, REGISTRY, SUB, FakeTime
from tests.transport import FixedTokens, MockTransport, Reply, mock_session

ENDPOINT = "https://management.azure.com"
REGISTRY_PATH = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
RUNS_URL = ENDPOINT + REGISTRY_PATH + "/runs"


def _run(n: int) -> dict[str, Any]:
    return {"id": f"{REGISTRY_PATH}/runs/run{n}", "name": f"run{n}", "properties": {"runId": f"run{n}"}}


def _client(handler: Callable[[requests.PreparedRequest], Reply], fake_time: FakeTime, **env: str) -> tuple[ArmClient, MockTransport]:
    session, transport = mock_session(handler)
    settings = Settings.from_env({"ARM_ENDPOINT": ENDPOINT, **env})
    return ArmClient(session, FixedTokens(), settings, sleep=fake_time.sleep, clock=fake_time.clock), transport


def _pages(*bodies: Reply) -> Callable[[requests.PreparedRequest], Reply]:
    replies = iter(bodies)
    return lambda request: next(replies)


def test_pages_are_followed_through_nextlink(fake_time: FakeTime) -> None:
    """Every page is yielded in order; the listing ends at the page without nextLink."""
    second = RUNS_URL + "?api-version=2019-04-01&$skipToken=abc"
    client, transport = _client(_pages(Reply(200, {"value": [_run(1), _run(2)], "nextLink": second}), Reply(200, {"value": [_run(3)]})),
                                fake_time)
    pages = list(client.list_runs(REGISTRY_PATH, "TaskName eq 'release' and Status eq 'Succeeded'", 2))
    assert [[run["name"] for run in page] for page in pages] == [["run1", "run2"], ["run3"]]
    first = urlsplit(str(transport.requests[0].url))
    assert ENDPOINT + first.path == RUNS_URL
    assert parse_qs(first.query) == {"api-version": ["2019-04-01"], "$filter": ["TaskName eq 'release' and Status eq 'Succeeded'"], "$top": ["2"]}
    assert transport.requests[1].url == second


@pytest.mark.parametrize(
    "link",
    ["https://evil.example/runs?x", "http://management.azure.com/runs", "https://management.azure.com:444/runs",
     "https://user@management.azure.com/runs", "https://evil.example\\@management.azure.com/runs", "//evil.example/runs",
     "https://management.azure.com\t/runs", 42],
    ids=["other-host", "http-on-the-same-host", "other-port", "userinfo", "backslash", "protocol-relative", "tab", "not-a-string"],
)
def test_a_foreign_nextlink_ends_the_listing_after_the_pages_listed(fake_time: FakeTime, link: Any) -> None:
    """The first page is kept; the foreign link is never requested; the error is PolicyFailed, final."""
    client, transport = _client(_pages(Reply(200, {"value": [_run(1)], "nextLink": link})), fake_time)
    pages = client.list_runs(REGISTRY_PATH)
    assert [run["name"] for run in next(pages)] == ["run1"]
    with pytest.raises(UnsafeLink) as caught:
        next(pages)
    assert (caught.value.code, caught.value.retryable) == ("PolicyFailed", False)
    assert len(transport.requests) == 1


def test_a_nextlink_that_loops_ends_the_listing(fake_time: FakeTime) -> None:
    """ARM pointing back to a page already read cannot keep a sweep running forever."""
    again = RUNS_URL + "?api-version=2019-04-01&page=2"
    client, transport = _client(lambda request: Reply(200, {"value": [_run(1)], "nextLink": again}), fake_time)
    with pytest.raises(UnsafeLink):
        list(client.list_runs(REGISTRY_PATH))
    assert len(transport.requests) == 2


def test_a_page_is_retried_like_any_arm_request(fake_time: FakeTime) -> None:
    """503 with Retry-After on a page: waited, retried, then the page."""
    client, transport = _client(_pages(Reply(503, headers={"Retry-After": "2"}), Reply(200, {"value": [_run(1)]})), fake_time)
    assert [len(page) for page in client.list_runs(REGISTRY_PATH)] == [1]
    assert fake_time.sleeps == [2.0] and len(transport.requests) == 2


def test_a_final_arm_error_on_a_page_keeps_arms_details(fake_time: FakeTime) -> None:
    """A 404 registry is ARM's own final error."""
    body = {"error": {"code": "ResourceNotFound", "message": "no registry"}}
    client, _ = _client(_pages(Reply(404, body, {"x-ms-request-id": "req-1"})), fake_time)
    with pytest.raises(ArmError) as caught:
        list(client.list_runs(REGISTRY_PATH))
    assert (caught.value.code, caught.value.status, caught.value.request_id, caught.value.retryable) == ("ResourceNotFound", 404, "req-1", False)


@pytest.mark.parametrize("body", [None, [], {"value": "runs"}, {"values": []}], ids=["empty", "array", "value-not-a-list", "no-value"])
def test_an_answer_without_a_run_list_is_unavailable(fake_time: FakeTime, body: Any) -> None:
    """A 200 that is not {"value": [...]} is a garbled answer: ArmUnavailable (retryable)."""
    client, _ = _client(lambda request: Reply(200, body), fake_time)
    with pytest.raises(ArmUnavailable):
        list(client.list_runs(REGISTRY_PATH))


@pytest.mark.parametrize(
    "path",
    [REGISTRY_PATH + "/runs", REGISTRY_PATH + "?x=1", "/subscriptions/x/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/reg12",
     REGISTRY_PATH.replace(REGISTRY, "../../x"), "https://evil.example" + REGISTRY_PATH, REGISTRY_PATH + "\n"],
    ids=["runs-suffix", "query", "bad-subscription", "dot-segments", "absolute-url", "newline"],
)
def test_a_registry_path_outside_the_strict_form_is_refused(fake_time: FakeTime, path: str) -> None:
    """No URL is built from unvalidated input (contract §7)."""
    client, transport = _client(lambda request: Reply(200, {"value": []}), fake_time)
    with pytest.raises(ValueError):
        next(client.list_runs(path))
    assert transport.requests == []


def test_a_resource_group_with_unicode_letters_is_listed_percent_encoded(fake_time: FakeTime) -> None:
    """Resource group names may hold Unicode letters (contract §2): the path is sent percent-encoded, parentheses too."""
    path = REGISTRY_PATH.replace(GROUP, "grüne-(gruppe)")
    client, transport = _client(lambda request: Reply(200, {"value": []}), fake_time)
    assert list(client.list_runs(path)) == [[]]
    assert urlsplit(str(transport.requests[0].url)).path.endswith("/resourceGroups/gr%C3%BCne-%28gruppe%29/providers/"
                                                                  f"Microsoft.ContainerRegistry/registries/{REGISTRY}/runs")
