"""Attack on the outcome's size (contract §4, §5): every outcome fits a Service Bus standard-tier message (256 KiB).

`run` is ARM's answer, and ARM's answer is input: a Run of 300 KB (a huge runErrorMessage, thousands of
output images) made an outcome Service Bus can never take, so the publish failed on every delivery: the
PATCH repeated MAX_DELIVERY_COUNT times and the message was dead-lettered without an outcome (over HTTP:
503 for ever). Past RUN_LIMIT encoded bytes the outcome carries the Run abridged to its identity and
state fields, each bounded; a Run within the limit is kept exactly as ARM returned it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from azure.functions.servicebus import ServiceBusMessage

from emulators.server import Exchange, LoopbackServer
from emulators.state import build_run
from shared import jsontext
from shared.outcome import ANSWER_GROWTH, RUN_LIMIT
from tests.strict import strict_lines
from tests.support import GROUP, REGISTRY, SUB, Emulators, assert_valid_run, functions, start_emulators

RUN = "cab7"
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": RUN, "isArchiveEnabled": True}
SERVICE_BUS_STANDARD_BYTES = 256 * 1024


def base_run() -> dict[str, Any]:
    return build_run(SUB, GROUP, REGISTRY, RUN, example="RunsUpdate", is_archive_enabled=True)


def with_properties(**extra: Any) -> dict[str, Any]:
    run = base_run()
    return {**run, "properties": {**run["properties"], **extra}}


# The Run ARM answers the PATCH with, by class of bulk.
HUGE_RUNS = {
    "huge-error-message": lambda: with_properties(runErrorMessage="e" * 400_000),
    "many-output-images": lambda: with_properties(
        outputImages=[{"registry": "r.azurecr.io", "repository": f"app{i}", "tag": "v1", "digest": "sha256:" + "a" * 64}
                      for i in range(4000)]
    ),
    "escapes-quadruple-the-size": lambda: with_properties(runErrorMessage="\x01" * 70_000),
    "huge-unknown-field": lambda: {**base_run(), "zz": ["x" * 1000] * 400},
    "huge-identity-field": lambda: with_properties(status="S" * 300_000),
}


class RunArm(LoopbackServer):
    """ARM answering every PATCH 200 with the scripted Run."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__()
        self.run = json.dumps(run).encode()

    def handle(self, exchange: Exchange) -> None:
        """The scripted Run, in one write."""
        exchange.reply(200, self.run, {"Content-Type": "application/json"})


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """Identity emulator for tokens; ARM_ENDPOINT points at each test's RunArm."""
    with start_emulators(monkeypatch, tmp_path) as emulators:
        yield emulators


def archive(running: Emulators, monkeypatch: pytest.MonkeyPatch, run: dict[str, Any]) -> dict[str, Any]:
    """One queue event against a RunArm answering `run`; the one outcome line written."""
    with RunArm(run) as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        message = ServiceBusMessage(
            body=json.dumps(EVENT).encode(), message_id="size-1", delivery_count=1, application_properties={}, user_properties={}
        )
        assert functions()["archive_queue"](message) is None
    (record,) = strict_lines(running.outcome_file)
    return record


@pytest.mark.parametrize("make_run", HUGE_RUNS.values(), ids=HUGE_RUNS.keys())
def test_a_huge_run_is_abridged_so_the_outcome_fits_service_bus(
    running: Emulators, monkeypatch: pytest.MonkeyPatch, make_run: Any
) -> None:
    """Succeeded; the outcome's body within 256 KiB; the Run keeps id, name and its state, and still validates."""
    record = archive(running, monkeypatch, make_run())
    body = record["body"]
    assert body["outcome"] == "succeeded"
    assert len(json.dumps(body, separators=(",", ":")).encode()) < SERVICE_BUS_STANDARD_BYTES
    run = body["run"]
    assert len(json.dumps(run).encode()) <= RUN_LIMIT
    assert (run["id"], run["name"], run["properties"]["isArchiveEnabled"]) == (base_run()["id"], RUN, True)
    assert_valid_run(run)


def test_a_run_within_the_limit_is_kept_exactly(running: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Run just under RUN_LIMIT: the outcome carries it exactly as ARM returned it."""
    run = base_run()
    run = with_properties(runErrorMessage="m" * (RUN_LIMIT - len(json.dumps(run).encode()) - 100))
    assert archive(running, monkeypatch, run)["body"]["run"] == run


_JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSON_TEXT, exponent=st.booleans())
def test_a_decoded_answer_re_encodes_within_the_growth_bound(value: Any, exponent: bool) -> None:
    """What lets a small Run skip measuring: its strict re-encoding is at most ANSWER_GROWTH times the answer ARM sent."""
    raw = json.dumps({"n": [1e15, 9e15, -1e15], "v": value} if exponent else value, ensure_ascii=True).replace("1000000000000000.0", "1e15")
    assert len(jsontext.encode(json.loads(raw))) <= ANSWER_GROWTH * len(raw.encode())
