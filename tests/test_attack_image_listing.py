"""Attack on shape 4 (ImagePushed): ARM's Runs - List answer is hostile input (contract §2 shape 4, §3, §7).

A loopback ARM lists runs for the pushed image as a hostile or confused server might: the same run twice
(on one page, or on two pages of a listing that shifted while paging). Each run the image names gets
exactly one PATCH and one outcome, whatever the listing repeats.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators.server import Exchange, LoopbackServer
from emulators.state import build_run
from tests.strict import strict_lines
from tests.support import SUB, Emulators, functions, http_request, response_json, start_emulators

GROUP, REGISTRY = "pushGroup", "pushRegistry"
REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
DIGEST = "sha256:" + "ab" * 32


def run_of(run_id: str, *, registry_id: str = REGISTRY_ID) -> dict[str, Any]:
    """A listed Run as ARM shapes it."""
    run = build_run(SUB, GROUP, REGISTRY, run_id, example="RunsUpdate", is_archive_enabled=False)
    return {**run, "id": f"{registry_id}/runs/{run_id}"}


# Listing pages the hostile ARM answers, in order (each but the last links to the next), by class.
LISTINGS = {
    "same-run-twice-on-one-page": [[run_of("ca1"), run_of("ca1")]],
    "same-run-on-two-pages": [[run_of("ca1"), run_of("ca2")], [run_of("ca2"), run_of("ca3")]],
    "same-run-differing-in-case": [[run_of("ca1")], [{**run_of("ca1"), "id": run_of("ca1")["id"].upper().replace("CA1", "ca1")}]],
}


class ListingArm(LoopbackServer):
    """ARM answering Runs - List with scripted pages and every PATCH with the updated Run; counts PATCHes per run."""

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        super().__init__()
        self.pages = pages
        self.patches: dict[str, int] = {}
        self.lock = threading.Lock()

    def handle(self, exchange: Exchange) -> None:
        """Runs - List: the scripted page named by `page`; PATCH: the updated Run."""
        if exchange.command == "GET" and exchange.segments[-1] == "runs":
            index = int(exchange.query_value("page") or 0)
            body: dict[str, Any] = {"value": self.pages[index]}
            if index + 1 < len(self.pages):
                body["nextLink"] = f"{self.url}{exchange.raw_path.split('?')[0]}?api-version=2019-04-01&page={index + 1}"
            exchange.reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            return
        run_id = exchange.segments[-1]
        with self.lock:
            self.patches[run_id] = self.patches.get(run_id, 0) + 1
        run = build_run(SUB, GROUP, REGISTRY, run_id, example="RunsUpdate", is_archive_enabled=True)
        exchange.reply(200, json.dumps(run).encode(), {"Content-Type": "application/json"})


def pushed(repository: str = "app") -> dict[str, Any]:
    """An Event Grid ImagePushed event of `repository@DIGEST` on REGISTRY_ID."""
    return {
        "id": "push-evt-1", "topic": REGISTRY_ID, "subject": f"{repository}:v1",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed", "eventTime": "2026-11-27T16:30:00Z", "dataVersion": "1.0",
        "data": {"target": {"repository": repository, "digest": DIGEST, "tag": "v1"}},
    }


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """Identity and ARM emulators; each test points ARM_ENDPOINT at its own hostile listing server."""
    with start_emulators(monkeypatch, tmp_path) as emulators:
        yield emulators


@pytest.mark.parametrize("pages", LISTINGS.values(), ids=LISTINGS.keys())
@pytest.mark.parametrize("entry", ["queue", "http"])
def test_a_run_listed_twice_is_archived_once_with_one_outcome(
    running: Emulators, monkeypatch: pytest.MonkeyPatch, pages: list[list[dict[str, Any]]], entry: str
) -> None:
    """One PATCH and one outcome per distinct run of the listing; outcome message ids never repeat."""
    with ListingArm(pages) as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        body = json.dumps(pushed()).encode()
        if entry == "queue":
            message = ServiceBusMessage(
                body=body, message_id="push-1", delivery_count=1, application_properties={}, user_properties={}
            )
            assert functions()["archive_queue"](message) is None
        else:
            headers = {"Content-Type": "application/json", "x-correlation-id": "c1"}
            request = http_request("POST", "archive-events", body=body, headers=headers)
            response = functions()["archive_events"](request)
            assert response.status_code == 200
            assert len(response_json(response)["outcomes"]) == len({r["name"] for page in pages for r in page})
    distinct = {r["name"].lower() for page in pages for r in page}
    records = strict_lines(running.outcome_file)
    assert sorted(server.patches) == sorted(distinct) and set(server.patches.values()) == {1}, server.patches
    assert len(records) == len(distinct)
    assert len({record["message_id"] for record in records}) == len(records)


OTHER_REGISTRY_ID = REGISTRY_ID.replace(GROUP, "otherGroup")
# A listed run the app refuses (not of the pushed registry) beside a real run of the same name, by order.
COLLIDING = {
    "refused-first": [[run_of("ca1", registry_id=OTHER_REGISTRY_ID), run_of("ca1")]],
    "refused-after": [[run_of("ca1"), run_of("ca1", registry_id=OTHER_REGISTRY_ID)]],
    "refused-without-id": [[{"name": "ca1"}, run_of("ca1")]],
}


@pytest.mark.parametrize("pages", COLLIDING.values(), ids=COLLIDING.keys())
def test_a_refused_listed_run_never_shares_an_outcome_id_with_a_real_one(
    running: Emulators, monkeypatch: pytest.MonkeyPatch, pages: list[list[dict[str, Any]]]
) -> None:
    """The real run's succeeded outcome and the refused run's rejected one have distinct ids: duplicate detection keeps both."""
    with ListingArm(pages) as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        body = json.dumps(pushed()).encode()
        message = ServiceBusMessage(body=body, message_id="push-1", delivery_count=1, application_properties={},
                                    user_properties={})
        assert functions()["archive_queue"](message) is None
    records = strict_lines(running.outcome_file)
    assert sorted(record["body"]["outcome"] for record in records) == ["rejected", "succeeded"]
    assert server.patches == {"ca1": 1}
    succeeded = next(record for record in records if record["body"]["outcome"] == "succeeded")
    assert succeeded["message_id"] == "push-1:run:ca1:outcome"
    assert len({record["message_id"] for record in records}) == 2
