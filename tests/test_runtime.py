"""The process-wide Runtime: settings re-read only when the environment they come from changes."""

from __future__ import annotations

import os

import pytest

from shared.runtime import WATCHED_ENVIRONMENT, Runtime


@pytest.mark.parametrize("mapping", ["dict", "os.environ"])
def test_settings_are_rebuilt_only_when_a_watched_variable_changes(mapping: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same Settings object while nothing changes; new ones after a setting, or a proxy variable, changed."""
    for name in WATCHED_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    env: dict[str, str] | os._Environ[str] = {} if mapping == "dict" else os.environ

    def put(name: str, value: str) -> None:
        if isinstance(env, dict):
            env[name] = value
        else:
            monkeypatch.setenv(name, value)

    put("ARM_MAX_ATTEMPTS", "3")
    runtime = Runtime(env)
    first = runtime.settings()
    assert runtime.settings() is first and first.arm_max_attempts == 3
    put("UNRELATED_VARIABLE", "x")
    assert runtime.settings() is first
    put("ARM_MAX_ATTEMPTS", "5")
    second = runtime.settings()
    assert second is not first and second.arm_max_attempts == 5
    put("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert runtime.settings() is not second
