"""Process-wide resources: built lazily on first use, then reused by every invocation.

The Functions host imports `function_app` once per worker process and runs invocations on a thread
pool, so the Session (connection reuse), the managed-identity token cache and the Service Bus sender
live here, one each. Settings are re-read only when the environment they come from changes (the host
restarts the worker when app settings change; tests change the environment in-process), and each
resource is rebuilt only when the settings it depends on change.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

from shared.arm import ENVIRONMENT_NAMES, ArmClient, new_session
from shared.auth import ManagedIdentityTokens, TokenProvider
from shared.publisher import Publisher, make_publisher
from shared.reschedule import make_scheduler
from shared.service import Archiver, Scheduler
from shared.settings import SETTING_NAMES, Settings

__all__ = ["Runtime"]

# azure-identity reads these itself; a new endpoint (a test's emulator) needs a new credential.
IDENTITY_ENVIRONMENT = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT")
WATCHED_ENVIRONMENT = SETTING_NAMES + IDENTITY_ENVIRONMENT + ENVIRONMENT_NAMES
"""A change to any of these means new Settings, hence a new Archiver (and what depends on them)."""


class Runtime:
    """Builds the Archiver for the current environment, reusing what has not changed."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        session_factory: Callable[[], requests.Session] = new_session,
        token_factory: Callable[[Settings], TokenProvider] | None = None,
        publisher_factory: Callable[[Settings], Publisher] = make_publisher,
        scheduler_factory: Callable[[Settings], Scheduler | None] = make_scheduler,
        arm_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._env = env
        self._current_key = _key_reader(env, WATCHED_ENVIRONMENT)
        self._session_factory = session_factory
        self._token_factory = token_factory or (lambda s: ManagedIdentityTokens.for_settings(s.azure_client_id, s.arm_scope))
        self._publisher_factory = publisher_factory
        self._scheduler_factory = scheduler_factory
        self._arm_options = dict(arm_options or {})
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._settings: Settings | None = None
        self._archiver: Archiver | None = None
        self._session: requests.Session | None = None
        self._tokens: dict[tuple[Any, ...], TokenProvider] = {}
        self._publishers: dict[tuple[Any, ...], Publisher] = {}
        self._schedulers: dict[tuple[Any, ...], Scheduler | None] = {}

    def settings(self) -> Settings:
        """The current settings (raises ConfigurationError naming every malformed one)."""
        key = self._current_key()
        settings = self._settings
        if settings is not None and key == self._key:
            return settings
        with self._lock:
            if self._settings is None or key != self._key:
                self._settings = Settings.from_env(self._env)
                self._archiver = None
                self._key = key
            return self._settings

    def settings_without(self, names: list[str]) -> Settings:
        """Settings read as if the named (malformed) settings were unset: what else is missing."""
        return Settings.from_env({name: value for name, value in self._env.items() if name not in names})

    def archiver(self) -> Archiver:
        """The Archiver for the current settings (raises ConfigurationError)."""
        settings = self.settings()
        archiver = self._archiver
        if archiver is not None and archiver.settings is settings:
            return archiver
        with self._lock:
            if self._archiver is None or self._archiver.settings is not settings:
                self._archiver = self._build(settings)
            return self._archiver

    def close(self) -> None:
        """Release connections and senders."""
        with self._lock:
            for closable in [*self._publishers.values(), *self._schedulers.values()]:
                if closable is not None:
                    closable.close()
            self._publishers.clear()
            self._schedulers.clear()
            if self._session is not None:
                self._session.close()
                self._session = None
            self._archiver = None

    def _build(self, settings: Settings) -> Archiver:
        connection = (
            settings.outcome_file, settings.servicebus_connection_string, settings.servicebus_namespace,
            settings.servicebus_client_id, settings.servicebus_credential, settings.azure_client_id,
        )
        publisher_key = connection + (settings.outcome_topic_name, settings.outcome_namespace)
        publisher = self._publishers.get(publisher_key)
        if publisher is None:
            publisher = self._publishers[publisher_key] = self._publisher_factory(settings)
        scheduler_key = connection + (settings.archive_queue_name,)
        if scheduler_key not in self._schedulers:
            self._schedulers[scheduler_key] = self._scheduler_factory(settings)
        token_key = (settings.azure_client_id, settings.arm_scope) + tuple(self._env.get(n) for n in IDENTITY_ENVIRONMENT)
        tokens = self._tokens.get(token_key)
        if tokens is None:
            tokens = self._tokens[token_key] = self._token_factory(settings)
        if self._session is None:
            self._session = self._session_factory()
        arm = ArmClient(self._session, tokens, settings, **self._arm_options)
        return Archiver(settings, arm, publisher, self._schedulers[scheduler_key])


def _key_reader(env: Mapping[str, str], names: tuple[str, ...]) -> Callable[[], tuple[Any, ...]]:
    """A function returning the current values of `names` in `env`, to compare with the last ones.

    Every invocation calls it, so it is on the hot path. os.environ decodes each value it returns
    (about 0.4 µs a name, 37 names); its `_data` dict holds the same names and values encoded, and
    os.environ's own writes (monkeypatch.setenv included) update it, so those compare just as well
    at one dict lookup each.
    """
    data, encodekey = getattr(env, "_data", None), getattr(env, "encodekey", None)
    if env is os.environ and isinstance(data, dict) and callable(encodekey):
        keys: tuple[Any, ...] = tuple(map(encodekey, names))
        get: Callable[[Any], Any] = data.get
    else:
        keys, get = names, env.get
    return lambda: tuple(map(get, keys))
