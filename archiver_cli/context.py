"""What every command works with: settings, output streams, and how to open Service Bus and ARM."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

from shared.auth import TokenCredential
from shared.publisher import servicebus_client_factory
from shared.settings import Settings

__all__ = ["CliError", "Context", "DEFAULT_SUBSCRIPTION", "default_credential", "describe", "load_settings"]

DEFAULT_SUBSCRIPTION = "failed-outcomes"
"""The example outcome subscription (filter `outcome = 'failed'`) that infra/main.bicep and the emulator create."""


class CliError(Exception):
    """A failure to report as one line on stderr; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def describe(error: BaseException) -> str:
    """An Azure SDK error as one short line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    first = lines[0].strip()[:300] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def load_settings(env: Mapping[str, str], settings_file: str | None = None, namespace: str | None = None) -> Settings:
    """The app's settings as the operator sees them: the environment, then a local.settings.json, then --namespace.

    The Service Bus credential is the operator's own (DefaultAzureCredential: `az login`, azd, VS Code…),
    never the app's `managedidentity`, which exists only inside Azure.
    """
    values = {name: value for name, value in env.items()}
    if settings_file:
        values.update(_read_local_settings(settings_file))
    if namespace:
        values["ServiceBusConnection__fullyQualifiedNamespace"] = namespace
        values.pop("ServiceBusConnection", None)
        values.pop("OUTCOME_SERVICEBUS_NAMESPACE", None)
    return replace(Settings.from_env(values), servicebus_credential=None)


def default_credential(settings: Settings) -> TokenCredential:
    """DefaultAzureCredential: the operator's sign-in, or the managed identity when run inside Azure."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)


@dataclass
class Context:
    """Settings, streams and seams of one CLI invocation."""

    settings: Settings
    stdout: TextIO
    stderr: TextIO
    open_servicebus: Callable[[], Any] | None = None
    """Opens every Service Bus client when set (tests pass a fake); otherwise the settings decide."""
    credential_factory: Callable[[Settings], TokenCredential] = default_credential
    progress: bool | None = None
    """Show progress bars: True/False forced, None when stderr is a terminal and there is much to do."""

    def queue_name(self, override: str | None) -> str:
        """--queue, else ARCHIVE_QUEUE_NAME."""
        name = override or self.settings.archive_queue_name
        if not name:
            raise CliError("no queue: set ARCHIVE_QUEUE_NAME or pass --queue", 2)
        return name

    def topic_name(self, override: str | None) -> str:
        """--topic, else OUTCOME_TOPIC_NAME."""
        name = override or self.settings.outcome_topic_name
        if not name:
            raise CliError("no topic: set OUTCOME_TOPIC_NAME or pass --topic", 2)
        return name

    def queue_client(self) -> Any:
        """A ServiceBusClient for the archive queue's namespace (the trigger's ServiceBusConnection)."""
        return self._client(for_outcomes=False)

    def topic_client(self) -> Any:
        """A ServiceBusClient for the outcome topic's namespace (OUTCOME_SERVICEBUS_NAMESPACE, else the trigger's)."""
        return self._client(for_outcomes=True)

    def _client(self, *, for_outcomes: bool) -> Any:
        if self.open_servicebus is not None:
            return self.open_servicebus()
        settings = self.settings
        namespace = settings.publisher_namespace if for_outcomes else settings.servicebus_namespace
        if not (settings.servicebus_connection_string or namespace):
            raise CliError(_NO_CONNECTION, 2)
        return _open(servicebus_client_factory(settings, for_outcomes=for_outcomes))


_NO_CONNECTION = (
    "no Service Bus connection: set ServiceBusConnection__fullyQualifiedNamespace (or pass --namespace), "
    "or ServiceBusConnection to a connection string such as the emulator's"
)


def _open(factory: Callable[[], Any]) -> Any:
    try:
        return factory()
    except ValueError:  # from_connection_string: the message never repeats the string, nor do we
        raise CliError("ServiceBusConnection is not a valid Service Bus connection string", 2) from None


def _read_local_settings(path: str) -> dict[str, str]:
    """The "Values" of a local.settings.json file."""
    try:
        with open(path, encoding="utf-8-sig") as source:
            document = json.load(source)
    except OSError as error:
        raise CliError(f"{path}: {error.strerror}", 2) from None
    except ValueError as error:
        raise CliError(f"{path}: not valid JSON ({error})", 2) from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise CliError(f'{path}: no "Values" object, as local.settings.json has', 2)
    return {str(name): str(value) for name, value in values.items() if value is not None}
