"""Attack on ARM's answer size (contract §3, §7): an answer is read into memory only up to a bound.

requests asks for gzip and inflates whatever comes back, so ~100 KB on the wire can be 96 MiB in
memory (a compression bomb); a plain answer can be as large as the timeout lets through. Past
MAX_ANSWER_BYTES decoded, the answer is as unusable as a broken connection: ArmUnavailable (retryable),
an outcome on the last delivery, and the body is never held whole.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators.server import Exchange, LoopbackServer
from emulators.state import build_run
from shared.arm import MAX_ANSWER_BYTES
from tests.strict import strict_lines
from tests.support import GROUP, REGISTRY, SUB, Emulators, functions, start_emulators

RUN = "cab7"
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": RUN, "isArchiveEnabled": True}


def padded_run(extra: int) -> bytes:
    """A valid Run as JSON, `extra` bytes of whitespace before its closing brace: valid, and huge."""
    run = json.dumps(build_run(SUB, GROUP, REGISTRY, RUN, example="RunsUpdate", is_archive_enabled=True)).encode()
    return run[:-1] + b" " * extra + b"}"


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15)
    return compressor.compress(data) + compressor.flush()


# How the hostile ARM sends its 200 answer to the PATCH: (Content-Encoding, body on the wire), by class.
ANSWERS = {
    "gzip-bomb": lambda: ("gzip", gzip.compress(padded_run(MAX_ANSWER_BYTES * 6), compresslevel=9)),
    "deflate-bomb": lambda: ("deflate", deflated(padded_run(MAX_ANSWER_BYTES * 6))),
    "plain-just-past-the-bound": lambda: (None, padded_run(MAX_ANSWER_BYTES + 1)),
}


class BigArm(LoopbackServer):
    """ARM answering every request 200 with the scripted body and encoding."""

    def __init__(self, encoding: str | None, body: bytes) -> None:
        super().__init__()
        self.encoding, self.body = encoding, body

    def handle(self, exchange: Exchange) -> None:
        """The scripted answer, in one write."""
        headers = {"Content-Type": "application/json"}
        if self.encoding:
            headers["Content-Encoding"] = self.encoding
        exchange.reply(200, self.body, headers)


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """Identity emulator for tokens; ARM_ENDPOINT points at each test's BigArm, one attempt, last delivery."""
    with start_emulators(monkeypatch, tmp_path, ARM_MAX_ATTEMPTS="1", MAX_DELIVERY_COUNT="1") as emulators:
        yield emulators


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_answer_past_the_bound_is_arm_unavailable(running: Emulators, monkeypatch: pytest.MonkeyPatch, answer) -> None:
    """Last delivery: one failed outcome, ArmUnavailable, retryable, naming the bound; then the trigger raises (dead-letter)."""
    encoding, body = answer()
    with BigArm(encoding, body) as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        message = ServiceBusMessage(
            body=json.dumps(EVENT).encode(), message_id="big-1", delivery_count=1, application_properties={}, user_properties={}
        )
        with pytest.raises(Exception) as raised:
            functions()["archive_queue"](message)
    assert getattr(raised.value, "code", None) == "ArmUnavailable"
    (record,) = strict_lines(running.outcome_file)
    error = record["body"]["error"]
    assert (record["body"]["outcome"], error["code"], error["retryable"]) == ("failed", "ArmUnavailable", True)
    assert f"{MAX_ANSWER_BYTES // (1024 * 1024)} MiB" in error["message"]


def test_an_answer_at_the_bound_is_read(running: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly MAX_ANSWER_BYTES decoded (gzip on the wire): read whole, the update succeeds."""
    run = padded_run(0)
    with BigArm("gzip", gzip.compress(padded_run(MAX_ANSWER_BYTES - len(run)))) as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        message = ServiceBusMessage(
            body=json.dumps(EVENT).encode(), message_id="big-2", delivery_count=1, application_properties={}, user_properties={}
        )
        assert functions()["archive_queue"](message) is None
    (record,) = strict_lines(running.outcome_file)
    assert record["body"]["outcome"] == "succeeded"
