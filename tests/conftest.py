"""Shared fixtures: the project's emulators on loopback and an environment pointing the app at them.

Every test also runs under `no_secret_leaks`: no token, key, secret or signature may appear in any log
record (any logger, DEBUG and up) or in an outcome the test wrote (contract §7; see tests/leaks.py).
"""

from __future__ import annotations

import logging
import os
import socketserver
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators import ArmEmulator, IdentityEmulator
from tests import support
from tests.support import FakeTime, isolate_environment
from tests.leaks import SECRETS, LeakWatch, env_secrets, find_leaks, outcome_texts

_WATCH = pytest.StashKey[LeakWatch]()
_OUTCOME_FILES = pytest.StashKey[set[Path]]()


@pytest.fixture(autouse=True)
def no_secret_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if a log record or an outcome it produced holds a secret or a credential."""
    watch = LeakWatch()
    root = logging.getLogger()
    level = root.level
    request.node.stash[_WATCH] = watch
    request.node.stash[_OUTCOME_FILES] = set()
    SECRETS.clear()
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(watch)
        root.setLevel(level)
    texts = [(f"log record {n}", text) for n, text in enumerate(watch.texts, start=1)]
    texts += outcome_texts(request.node.stash[_OUTCOME_FILES])
    leaks = find_leaks(texts, SECRETS.values() | watch.secrets)
    SECRETS.clear()
    if leaks:
        pytest.fail("secrets leaked:\n" + "\n".join(leaks[:20]), pytrace=False)


@pytest.fixture(autouse=True)
def close_apps() -> Iterator[None]:
    """Close every app a test built, releasing its sessions, senders and threads."""
    yield
    while support.BUILT_APPS:
        support.BUILT_APPS.pop().close()


@pytest.fixture
def leak_watch(request: pytest.FixtureRequest) -> LeakWatch:
    """The handler `no_secret_leaks` reads this test's log records from."""
    return request.node.stash[_WATCH]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Note the environment's secrets and outcome file as the test body leaves them, before monkeypatch undoes them."""
    yield
    watch = item.stash.get(_WATCH, None)
    if watch is None:
        return
    watch.secrets |= env_secrets()
    files = item.stash[_OUTCOME_FILES]
    if os.environ.get("OUTCOME_FILE"):
        files.add(Path(os.environ["OUTCOME_FILE"]))
    outcome_file = getattr(item, "funcargs", {}).get("outcome_file")
    if isinstance(outcome_file, Path):
        files.add(outcome_file)


@pytest.fixture
def fake_time() -> FakeTime:
    """Virtual time for retry and polling waits."""
    return FakeTime()


@pytest.fixture
def identity() -> Iterator[IdentityEmulator]:
    """The managed-identity endpoint (App Service protocol), counting token requests."""
    with IdentityEmulator() as emulator:
        SECRETS.add(emulator.header_secret)
        SECRETS.watch(lambda: emulator.issued)
        yield emulator


@pytest.fixture
def arm(identity: IdentityEmulator) -> Iterator[ArmEmulator]:
    """The ARM/ACR emulator, accepting only tokens the identity endpoint issued."""
    with ArmEmulator(token_validator=identity.is_valid) as emulator:
        yield emulator


@pytest.fixture
def outcome_file(tmp_path: Path) -> Path:
    """Where the app writes outcomes (OUTCOME_FILE)."""
    return tmp_path / "outcomes.jsonl"


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, identity: IdentityEmulator, arm: ArmEmulator, outcome_file: Path) -> dict[str, str]:
    """A clean environment: every contract setting cleared, then pointed at the emulators and the file sink."""
    env = {
        **identity.environ(),
        "ARM_ENDPOINT": arm.url,
        "ARCHIVE_QUEUE_NAME": "acr-archive-events",
        "OUTCOME_FILE": str(outcome_file),
        "ARM_RETRY_MAX_SECONDS": "5",
    }
    isolate_environment(monkeypatch, env)
    return env


@pytest.fixture
def functions(app_env: dict[str, str]) -> dict[str, Callable[..., Any]]:
    """The app's functions by name, as the Functions host indexes them (HTTP answers checked against openapi.yaml).

    The app is built on the first lookup, from the environment as the test has arranged it by then:
    the host, too, starts the worker once the app settings are in place.
    """
    return support.LazyFunctions()


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every socket write a socketserver-based emulator in this process makes, in order (one per answer is the rule)."""
    writes: list[bytes] = []
    original = socketserver._SocketWriter.write

    def spy(self: Any, data: bytes) -> int:
        writes.append(bytes(data))
        return original(self, data)

    monkeypatch.setattr(socketserver._SocketWriter, "write", spy)
    return writes
