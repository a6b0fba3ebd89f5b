"""The app factory: one app per configuration, its settings read once and its resources built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.app import build_app
from shared.errors import ConfigurationError
from shared.runtime import Runtime


def test_settings_are_read_once_from_the_mapping_the_app_was_built_with() -> None:
    """Changing the mapping afterwards changes nothing: the host restarts the worker for new settings."""
    env = {"ARM_MAX_ATTEMPTS": "3"}
    runtime = Runtime(env)
    first = runtime.settings()
    env["ARM_MAX_ATTEMPTS"] = "5"
    assert runtime.settings() is first and first.arm_max_attempts == 3


def test_a_malformed_setting_is_reported_on_every_use() -> None:
    """The same ConfigurationError, naming the setting, each time the settings are asked for."""
    runtime = Runtime({"ARM_MAX_ATTEMPTS": "many"})
    for _ in range(2):
        with pytest.raises(ConfigurationError) as raised:
            runtime.settings()
        assert raised.value.settings == ("ARM_MAX_ATTEMPTS",)


def test_two_apps_built_from_different_mappings_keep_their_own_settings(tmp_path: Path) -> None:
    """Each configuration is its own app: nothing is shared through a module global."""
    first = build_app({"ARM_MAX_ATTEMPTS": "2", "OUTCOME_FILE": str(tmp_path / "a.jsonl")})
    second = build_app({"ARM_MAX_ATTEMPTS": "7", "OUTCOME_FILE": str(tmp_path / "b.jsonl")})
    assert first.runtime.settings().arm_max_attempts == 2
    assert second.runtime.settings().arm_max_attempts == 7


def test_resources_are_built_once_and_rebuilt_only_after_close(tmp_path: Path) -> None:
    """The application service (and its session, tokens, publisher) is one per app until close()."""
    built: list[object] = []

    def publisher_factory(settings: object) -> object:
        publisher = _ClosingPublisher()
        built.append(publisher)
        return publisher

    app = build_app({"OUTCOME_FILE": str(tmp_path / "o.jsonl")}, publisher_factory=publisher_factory)
    archiver = app.runtime.archiver()
    assert app.runtime.archiver() is archiver and len(built) == 1
    app.close()
    assert built[0].closed  # type: ignore[attr-defined]
    assert app.runtime.archiver() is not archiver and len(built) == 2


def test_each_app_indexes_once_as_the_worker_does() -> None:
    """get_functions() on a fresh app lists the contract's functions; nothing private of azure-functions is reset."""
    names = {f.get_function_name() for f in build_app({}).get_functions()}
    assert names == {"archive_queue", "arm_patch_run", "archive_events", "archive_events_options", "sweep_policy", "health"}


class _ClosingPublisher:
    def __init__(self) -> None:
        self.closed = False

    def publish(self, outcome: object) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed = True
