"""What every command works with: settings, output streams, and how to open Service Bus and ARM."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from shared.arm import ArmClient, new_session
from shared.auth import ManagedIdentityTokens, TokenCredential
from shared.publisher import Publisher, ServiceBusPublisher, make_publisher, servicebus_client_factory
from shared.reschedule import ServiceBusScheduler
from shared.settings import Settings

__all__ = [
    "CliError",
    "Context",
    "DEFAULT_SUBSCRIPTION",
    "IDENTITY_NAMES",
    "MAX_COUNT",
    "SIGN_IN",
    "default_credential",
    "describe",
    "identity_environment",
    "load_settings",
    "operator_values",
    "positive_int",
    "settings_of",
]

SIGN_IN = "sign in with 'az login' or 'azd auth login'"
"""What to do when DefaultAzureCredential gave no token."""

IDENTITY_NAMES = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")
"""A managed-identity endpoint (App Service protocol): Azure's inside Azure, the identity emulator's locally."""

DEFAULT_SUBSCRIPTION = "failed-outcomes"
"""The example outcome subscription (filter `outcome = 'failed'`) that infra/main.bicep and the emulator create."""


class CliError(Exception):
    """A failure to report as one line on stderr; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


MAX_COUNT = 2**31 - 1
"""The largest count an option takes: ARM's `$top` and Service Bus message counts are int32."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number from 1 to MAX_COUNT."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_COUNT}, not {text!r}")
    return value


def describe(error: BaseException) -> str:
    """An Azure SDK error as one short line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    first = lines[0].strip()[:300] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def operator_values(env: Mapping[str, str], settings_file: str | None = None, namespace: str | None = None) -> dict[str, str]:
    """The settings as the operator gives them: the environment, then a local.settings.json, then --namespace."""
    values = {name: value for name, value in env.items()}
    if settings_file:
        values.update(_read_local_settings(settings_file))
    if namespace:
        values["ServiceBusConnection__fullyQualifiedNamespace"] = namespace
        values.pop("ServiceBusConnection", None)
        values.pop("OUTCOME_SERVICEBUS_NAMESPACE", None)
    return values


def load_settings(env: Mapping[str, str], settings_file: str | None = None, namespace: str | None = None) -> Settings:
    """The app's settings as the operator sees them (`operator_values`).

    The Service Bus credential is the operator's own (DefaultAzureCredential: `az login`, azd, VS Code…),
    never the app's `managedidentity`, which exists only inside Azure.
    """
    return settings_of(operator_values(env, settings_file, namespace))


def settings_of(values: Mapping[str, str]) -> Settings:
    """The Settings of `operator_values`, with the operator's own Service Bus credential."""
    return replace(Settings.from_env(values), servicebus_credential=None)


def default_credential(settings: Settings) -> TokenCredential:
    """The managed-identity endpoint when IDENTITY_ENDPOINT names one (`identity_environment`), else the operator's sign-in."""
    if all(os.environ.get(name) for name in IDENTITY_NAMES):
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.azure_client_id)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)


@contextmanager
def identity_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Put the settings' IDENTITY_ENDPOINT/IDENTITY_HEADER into os.environ for one command, then restore it.

    azure-identity and msal read only os.environ, and msal reads it again on every token request, so a
    local.settings.json's endpoint (the emulator's) must be there for the whole command, not just while
    the credential is built.
    """
    given = {name: values[name] for name in IDENTITY_NAMES if values.get(name)}
    if len(given) != len(IDENTITY_NAMES):
        yield
        return
    saved = {name: os.environ.get(name) for name in given}
    os.environ.update(given)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    values: Mapping[str, str] = field(default_factory=dict)
    """The raw settings the operator gave (`operator_values`): where the identity endpoint comes from."""

    def credential(self) -> TokenCredential:
        """The credential for ARM, from `credential_factory`."""
        return self.credential_factory(self.settings)

    @contextmanager
    def arm_client(self) -> Iterator[ArmClient]:
        """The app's ARM client with the operator's credential, on a session of its own closed afterwards."""
        tokens = ManagedIdentityTokens(self.credential(), self.settings.arm_scope)
        session = new_session(pool_size=1)
        try:
            yield ArmClient(session, tokens, self.settings)
        finally:
            session.close()

    def sign_in_hint(self) -> str:
        """What to do when no token came: start the named identity endpoint, or sign in."""
        endpoint = self.values.get("IDENTITY_ENDPOINT")
        if endpoint and self.values.get("IDENTITY_HEADER"):
            where = clean_url(endpoint)
            return f"is the managed-identity endpoint IDENTITY_ENDPOINT={where} running, and IDENTITY_HEADER its secret?"
        return SIGN_IN

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

    def queue_sender(self, queue: str) -> ServiceBusScheduler:
        """The app's own queue sender (shared.reschedule: one SharedSender, batches) on `queue`."""
        return ServiceBusScheduler(self.client_factory(for_outcomes=False), queue)

    def publisher(self) -> Publisher:
        """The app's outcome publisher: OUTCOME_FILE when set, else the topic, with the operator's Service Bus credential."""
        if self.settings.outcome_file:
            return make_publisher(self.settings)
        return ServiceBusPublisher(self.client_factory(for_outcomes=True), self.topic_name(None))

    def client_factory(self, *, for_outcomes: bool) -> Callable[[], Any]:
        """How to open a ServiceBusClient: the test seam, else the settings' (refused now when there is no connection)."""
        if self.open_servicebus is not None:
            return self.open_servicebus
        settings = self.settings
        namespace = settings.publisher_namespace if for_outcomes else settings.servicebus_namespace
        if not (settings.servicebus_connection_string or namespace):
            raise CliError(_NO_CONNECTION, 2)
        factory = servicebus_client_factory(settings, for_outcomes=for_outcomes)
        return lambda: _open(factory)

    def _client(self, *, for_outcomes: bool) -> Any:
        return self.client_factory(for_outcomes=for_outcomes)()


_NO_CONNECTION = (
    "no Service Bus connection: set ServiceBusConnection__fullyQualifiedNamespace (or pass --namespace), "
    "or ServiceBusConnection to a connection string such as the emulator's"
)


def clean_url(url: str) -> str:
    """A URL fit for one error line: no userinfo or query (either may hold a secret), no control characters, bounded."""
    text = url.split("?", 1)[0].split("#", 1)[0]
    scheme, separator, rest = text.rpartition("://")
    authority, slash, path = rest.partition("/")
    text = scheme + separator + authority.rsplit("@", 1)[-1] + slash + path  # userinfo may be a password
    return "".join(ch for ch in text if ch.isprintable() and not ch.isspace())[:200]


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
