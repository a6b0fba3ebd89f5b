"""Process resources of one app: built lazily on first use, then shared by every invocation.

The Functions host imports `function_app` once per worker process, runs invocations on a thread pool,
and restarts the worker when app settings change. So the settings are read once, from the mapping the
app was built with, and the Session (connection reuse), the managed-identity token cache, the Service
Bus sender and scheduler are built once each, on first use, and released by close().
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

from shared.arm import ArmClient, new_session
from shared.auth import ManagedIdentityTokens, TokenProvider
from shared.errors import ConfigurationError
from shared.publisher import Publisher, make_publisher
from shared.reschedule import make_scheduler
from shared.service import Archiver, Scheduler
from shared.settings import Settings

__all__ = ["IDENTITY_ENVIRONMENT", "Runtime"]

IDENTITY_ENVIRONMENT = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT")
"""What azure-identity's managed-identity credential reads from the process environment itself."""


class Runtime:
    """The settings and the shared resources of one app, each built once, on first use."""

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
        self._session_factory = session_factory
        self._token_factory = token_factory or (lambda s: ManagedIdentityTokens.for_settings(s.azure_client_id, s.arm_scope))
        self._publisher_factory = publisher_factory
        self._scheduler_factory = scheduler_factory
        self._arm_options = dict(arm_options or {})
        self._lock = threading.Lock()
        self._settings: Settings | ConfigurationError | None = None
        self._archiver: Archiver | None = None
        self._closables: list[Any] = []

    def settings(self) -> Settings:
        """The app's settings, read once (raises ConfigurationError naming every malformed one)."""
        settings = self._settings
        if settings is None:
            with self._lock:
                if self._settings is None:
                    try:
                        self._settings = Settings.from_env(self._env)
                    except ConfigurationError as error:
                        self._settings = error
                settings = self._settings
        if isinstance(settings, ConfigurationError):
            raise settings
        return settings

    def settings_without(self, names: list[str]) -> Settings:
        """Settings read as if the named (malformed) settings were unset: what else is missing."""
        return Settings.from_env({name: value for name, value in self._env.items() if name not in names})

    def archiver(self) -> Archiver:
        """The application service, built on first use (raises ConfigurationError)."""
        archiver = self._archiver
        if archiver is not None:
            return archiver
        settings = self.settings()
        with self._lock:
            if self._archiver is None:
                self._archiver = self._build(settings)
            return self._archiver

    def close(self) -> None:
        """Release connections and senders; the next use builds them again."""
        with self._lock:
            for closable in reversed(self._closables):
                closable.close()
            self._closables.clear()
            self._archiver = None

    def _build(self, settings: Settings) -> Archiver:
        publisher = self._publisher_factory(settings)
        self._closables.append(publisher)
        scheduler = self._scheduler_factory(settings)
        if scheduler is not None:
            self._closables.append(scheduler)
        session = self._session_factory()
        self._closables.append(session)
        arm = ArmClient(session, self._token_factory(settings), settings, **self._arm_options)
        return Archiver(settings, arm, publisher, scheduler)
