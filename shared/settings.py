"""App settings (contract §1): one frozen object built from a mapping such as `os.environ`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ConfigurationError

__all__ = ["Settings", "missing_settings"]  # and SETTING_NAMES, the names every setting is read by

SETTING_NAMES: tuple[str, ...] = (
    "ServiceBusConnection",
    "ServiceBusConnection__fullyQualifiedNamespace",
    "ServiceBusConnection__clientId",
    "ServiceBusConnection__credential",
    "ARCHIVE_QUEUE_NAME",
    "OUTCOME_TOPIC_NAME",
    "OUTCOME_SERVICEBUS_NAMESPACE",
    "OUTCOME_FILE",
    "AZURE_CLIENT_ID",
    "ARM_ENDPOINT",
    "ARM_SCOPE",
    "ARM_API_VERSION",
    "ARM_MAX_ATTEMPTS",
    "ARM_TIMEOUT_SECONDS",
    "ARM_RETRY_MAX_SECONDS",
    "LRO_TIMEOUT_SECONDS",
    "DEFAULT_SUBSCRIPTION_ID",
    "DEFAULT_RESOURCE_GROUP",
    "DEFAULT_REGISTRY_NAME",
    "ALLOWED_REGISTRIES",
    "WEBHOOK_SECRET",
    "MAX_DELIVERY_COUNT",
)
"""Every setting the app reads; a change to any of them means new Settings."""

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RESOURCE_GROUP = re.compile(r"^[\w\-.()]{1,90}$")
REGISTRY = re.compile(r"^[a-zA-Z0-9]{5,50}$")


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated settings of one process."""

    archive_queue_name: str | None = None
    outcome_topic_name: str | None = None
    outcome_file: str | None = None
    servicebus_connection_string: str | None = None
    servicebus_namespace: str | None = None
    outcome_namespace: str | None = None
    servicebus_client_id: str | None = None
    servicebus_credential: str | None = None
    azure_client_id: str | None = None
    arm_endpoint: str = "https://management.azure.com"
    arm_scope: str = "https://management.azure.com/.default"
    arm_api_version: str = "2019-04-01"
    arm_max_attempts: int = 4
    arm_timeout_seconds: float = 30.0
    arm_retry_max_seconds: float = 60.0
    lro_timeout_seconds: float = 120.0
    default_subscription_id: str | None = None
    default_resource_group: str | None = None
    default_registry_name: str | None = None
    allowed_registries: frozenset[str] | None = None
    webhook_secret: str | None = None
    max_delivery_count: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env`; raise one ConfigurationError naming every malformed setting."""
        reader = _Reader(env)
        settings = cls(
            archive_queue_name=reader.text("ARCHIVE_QUEUE_NAME"),
            outcome_topic_name=reader.text("OUTCOME_TOPIC_NAME"),
            outcome_file=reader.text("OUTCOME_FILE"),
            servicebus_connection_string=reader.text("ServiceBusConnection"),
            servicebus_namespace=reader.namespace("ServiceBusConnection__fullyQualifiedNamespace"),
            outcome_namespace=reader.namespace("OUTCOME_SERVICEBUS_NAMESPACE"),
            servicebus_client_id=reader.text("ServiceBusConnection__clientId"),
            servicebus_credential=reader.text("ServiceBusConnection__credential"),
            azure_client_id=reader.text("AZURE_CLIENT_ID"),
            arm_endpoint=reader.arm_endpoint("ARM_ENDPOINT", DEFAULTS.arm_endpoint),
            arm_scope=reader.text("ARM_SCOPE") or DEFAULTS.arm_scope,
            arm_api_version=reader.text("ARM_API_VERSION") or DEFAULTS.arm_api_version,
            arm_max_attempts=int(reader.number("ARM_MAX_ATTEMPTS", DEFAULTS.arm_max_attempts, integer=True, minimum=1)),
            arm_timeout_seconds=reader.number("ARM_TIMEOUT_SECONDS", DEFAULTS.arm_timeout_seconds, minimum=0.001),
            arm_retry_max_seconds=reader.number("ARM_RETRY_MAX_SECONDS", DEFAULTS.arm_retry_max_seconds, minimum=0),
            lro_timeout_seconds=reader.number("LRO_TIMEOUT_SECONDS", DEFAULTS.lro_timeout_seconds, minimum=0),
            default_subscription_id=reader.matching("DEFAULT_SUBSCRIPTION_ID", GUID, "a GUID"),
            default_resource_group=reader.resource_group("DEFAULT_RESOURCE_GROUP"),
            default_registry_name=reader.matching("DEFAULT_REGISTRY_NAME", REGISTRY, "5-50 letters or digits"),
            allowed_registries=reader.allowed_registries("ALLOWED_REGISTRIES"),
            webhook_secret=reader.text("WEBHOOK_SECRET"),
            max_delivery_count=int(reader.number("MAX_DELIVERY_COUNT", DEFAULTS.max_delivery_count, integer=True, minimum=1)),
        )
        if reader.problems:
            raise ConfigurationError(reader.problems)
        return settings

    @property
    def publisher_namespace(self) -> str | None:
        """The Service Bus namespace the outcome publisher connects to with an identity."""
        return self.outcome_namespace or self.servicebus_namespace

    @property
    def has_outcome_destination(self) -> bool:
        """True when outcomes can go somewhere: the file sink, or a topic on a reachable namespace."""
        if self.outcome_file:
            return True
        reachable = self.outcome_namespace or self.servicebus_connection_string or self.servicebus_namespace
        return bool(self.outcome_topic_name and reachable)

    def require_outcome_destination(self) -> None:
        """Raise ConfigurationError naming what is missing when outcomes have nowhere to go."""
        if self.has_outcome_destination:
            return
        if self.outcome_topic_name:
            raise ConfigurationError({"ServiceBusConnection__fullyQualifiedNamespace": "required by OUTCOME_TOPIC_NAME"})
        raise ConfigurationError({"OUTCOME_TOPIC_NAME": "required (or set OUTCOME_FILE)"})


DEFAULTS = Settings()
"""The contract's defaults."""


def missing_settings(settings: Settings) -> list[str]:
    """Names of the required settings that are not set (for the health route)."""
    missing = [] if settings.archive_queue_name else ["ARCHIVE_QUEUE_NAME"]
    if not settings.has_outcome_destination:
        if not settings.outcome_topic_name:
            missing.append("OUTCOME_TOPIC_NAME")
        missing.append("ServiceBusConnection__fullyQualifiedNamespace" if settings.outcome_topic_name else "OUTCOME_FILE")
    return missing


class _Reader:
    """Reads settings one by one, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: dict[str, str] = {}

    def text(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() or None if value is not None else None

    def number(self, name: str, default: float, *, minimum: float, integer: bool = False) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            self.problems[name] = "must be an integer" if integer else "must be a number"
            return default
        if not value >= minimum:
            self.problems[name] = f"must be at least {minimum:g}"
            return default
        return value

    def matching(self, name: str, pattern: re.Pattern[str], rule: str) -> str | None:
        value = self.text(name)
        if value is not None and not pattern.fullmatch(value):
            self.problems[name] = f"must be {rule}"
            return None
        return value

    def resource_group(self, name: str) -> str | None:
        value = self.matching(name, RESOURCE_GROUP, "1-90 letters, digits, _ - . ( )")
        if value is not None and value.endswith("."):
            self.problems[name] = "must not end in '.'"
            return None
        return value

    def namespace(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and ("/" in value or " " in value):
            self.problems[name] = "must be a host name such as mynamespace.servicebus.windows.net"
            return None
        return value

    def arm_endpoint(self, name: str, default: str) -> str:
        value = (self.text(name) or default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            self.problems[name] = "must be an absolute URL such as https://management.azure.com"
            return default
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            self.problems[name] = "must use https unless the host is loopback"
            return default
        return value

    def allowed_registries(self, name: str) -> frozenset[str] | None:
        raw = self.text(name)
        if raw is None:
            return None
        entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
        for entry in entries:
            parts = entry.split("/")
            if len(parts) not in (1, 3) or not REGISTRY.fullmatch(parts[-1]):
                self.problems[name] = "entries must be registryName or subscriptionId/resourceGroupName/registryName"
                return None
        return frozenset(entry.lower() for entry in entries) or None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
