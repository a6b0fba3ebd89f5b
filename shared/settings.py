"""App settings (contract §1): one frozen object built from a mapping such as `os.environ`.

Each setting is declared once, as a field of `Settings` made by `setting(...)`: its environment name,
default, parser and documentation. `SETTING_NAMES`, `Settings.from_env`, the README's configuration
table (`settings_table`) and the health check (`missing_settings`) are all derived from those fields.

pydantic-settings would give the same shape, but importing it and building one settings class costs
about 0.18 s here, nearly the app's whole 0.2 s cold start; a dataclass with field metadata costs nothing
the app does not import anyway. Rules that need no declaration of their own: an empty value is unset,
a value of only whitespace is malformed, and an unresolved Key Vault reference says so (`_parse`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from shared import setting_parsers as parse
from shared.errors import ConfigurationError
from shared.policies import ArchivePolicy, parse_policies
from shared.setting_parsers import GUID, REGISTRY, RESOURCE_GROUP, Malformed

__all__ = [
    "DEFAULTS",
    "GUID",
    "REGISTRY",
    "RESOURCE_GROUP",
    "SETTING_NAMES",
    "Requirement",
    "Settings",
    "missing_settings",
    "setting",
    "settings_table",
    "unmet_requirements",
]

KEY_VAULT_REFERENCE = "@microsoft.keyvault("


def setting(
    env: str, default: Any, parser: Callable[..., Any], doc: str, *, uses: str | None = None, secret: bool = False
) -> Any:
    """Declare one setting: its environment name, default, parser and README documentation.

    `uses` names another field (declared before this one) whose parsed value the parser takes as a
    second argument, for a rule that spans two settings. A `secret` stays out of the Settings' repr,
    so logging the settings object can never print it.
    """
    metadata = {"env": env, "parse": parser, "doc": doc, "uses": uses, "secret": secret}
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated settings of one process."""

    servicebus_namespace: str | None = setting(
        "ServiceBusConnection__fullyQualifiedNamespace", None, parse.namespace,
        "identity-based connection of the queue trigger; also the namespace outcomes go to "
        "unless `OUTCOME_SERVICEBUS_NAMESPACE` is set",
    )
    servicebus_credential: str | None = setting(
        "ServiceBusConnection__credential", None, parse.credential_kind, "as Functions defines it: `managedidentity`",
    )
    servicebus_client_id: str | None = setting(
        "ServiceBusConnection__clientId", None, parse.client_id,
        "as Functions defines it: the client id of the user-assigned identity the trigger connects with",
    )
    servicebus_connection_string: str | None = setting(
        "ServiceBusConnection", None, parse.connection_string,
        "alternatively a connection string with `Endpoint=sb://…` (local Service Bus emulator); the publisher then uses it too",
        secret=True,
    )
    archive_queue_name: str | None = setting("ARCHIVE_QUEUE_NAME", None, parse.entity_name, "the queue the trigger listens on")
    outcome_topic_name: str | None = setting("OUTCOME_TOPIC_NAME", None, parse.entity_name, "the topic outcomes are published to")
    outcome_namespace: str | None = setting(
        "OUTCOME_SERVICEBUS_NAMESPACE", None, parse.namespace, "another namespace for the outcome topic",
    )
    outcome_file: str | None = setting(
        "OUTCOME_FILE", None, parse.file_path,
        "local sink: outcomes are appended to this file as JSON lines *instead of* Service Bus",
    )
    azure_client_id: str | None = setting(
        "AZURE_CLIENT_ID", None, parse.client_id, "client id of the user-assigned managed identity (system-assigned when absent)",
    )
    arm_endpoint: str = setting(
        "ARM_ENDPOINT", "https://management.azure.com", parse.arm_endpoint,
        "Resource Manager base URL, a plain `scheme://host[:port]`; https unless the host is loopback",
    )
    arm_scope: str = setting("ARM_SCOPE", "https://management.azure.com/.default", parse.arm_scope, "token scope")
    arm_api_version: str = setting(
        "ARM_API_VERSION", "2019-04-01", parse.api_version, "api-version sent: `YYYY-MM-DD`, optionally `-preview`",
    )
    arm_max_attempts: int = setting(
        "ARM_MAX_ATTEMPTS", 4, parse.number(minimum=1, maximum=100, integer=True), "tries of one ARM request, the first included",
    )
    arm_timeout_seconds: float = setting(
        "ARM_TIMEOUT_SECONDS", 30.0, parse.number(minimum=0, maximum=3600, above=True),
        "bound of one ARM request as a whole, connect to last byte",
    )
    arm_retry_max_seconds: float = setting(
        "ARM_RETRY_MAX_SECONDS", 60.0, parse.number(minimum=0, maximum=86400),
        "total time one event may wait between retries (PATCH and polls share it)",
    )
    lro_timeout_seconds: float = setting(
        "LRO_TIMEOUT_SECONDS", 120.0, parse.number(minimum=0, maximum=86400), "how long to poll an accepted (201) update",
    )
    default_subscription_id: str | None = setting(
        "DEFAULT_SUBSCRIPTION_ID", None, parse.guid, "fills in `subscriptionId` when an event leaves it out",
    )
    default_resource_group: str | None = setting(
        "DEFAULT_RESOURCE_GROUP", None, parse.resource_group, "fills in `resourceGroupName` when an event leaves it out",
    )
    default_registry_name: str | None = setting(
        "DEFAULT_REGISTRY_NAME", None, parse.registry_name, "fills in `registryName` when an event leaves it out",
    )
    allowed_registries: frozenset[str] | None = setting(
        "ALLOWED_REGISTRIES", None, parse.registry_list,
        "comma list of `registryName` or `subscriptionId/resourceGroupName/registryName` (case-insensitive); "
        "any other registry is refused without calling ARM. Only commas or spaces is malformed, never \"allow all\"",
    )
    webhook_secret: str | None = setting(
        "WEBHOOK_SECRET", None, parse.text,
        "when set, HTTP writes must carry `X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`",
        secret=True,
    )
    max_delivery_count: int = setting(
        "MAX_DELIVERY_COUNT", 10, parse.number(minimum=1, maximum=2000, integer=True),
        "the queue's maxDeliveryCount: on that delivery a transient failure is published before dead-lettering",
    )
    archive_policies: tuple[ArchivePolicy, ...] = setting(
        "ARCHIVE_POLICIES", (), parse_policies,
        "JSON array of archive policies `{\"name\", \"registry\", \"filter\"?, \"isArchiveEnabled\"?}` (below); "
        "each policy's registry must pass `ALLOWED_REGISTRIES`. Unset: no policy sweeps",
        uses="allowed_registries",
    )
    archive_policy_schedule: str | None = setting(
        "ARCHIVE_POLICY_SCHEDULE", None, parse.ncrontab,
        "six-field NCRONTAB schedule of the policy sweep timer, e.g. `0 */15 * * * *`; "
        "required only when `ARCHIVE_POLICIES` is set",
    )
    archive_policy_lookback_days: float = setting(
        "ARCHIVE_POLICY_LOOKBACK_DAYS", 30.0, parse.number(minimum=0, maximum=3650, above=True),
        "a sweep considers runs created in this many days before it (ACR purges older run data anyway)",
    )
    arm_write_reserve: int = setting(
        "ARM_WRITE_RESERVE", 20, parse.number(minimum=0, maximum=100000, integer=True),
        "writes to leave in ARM's per-principal write bucket: below it, this process spaces its writes",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env`; raise one ConfigurationError naming every malformed setting."""
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for declared in fields(cls):
            name, parser, uses = declared.metadata["env"], declared.metadata["parse"], declared.metadata["uses"]
            raw = env.get(name)
            if raw is None or raw == "":  # empty is unset (contract §1)
                continue
            try:
                values[declared.name] = _parse(raw, parser, *([values.get(uses)] if uses else []))
            except Malformed as error:
                problems[name] = str(error)
        if problems:
            raise ConfigurationError(problems)
        return cls(**values)

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
        requirement = _outcome_destination(self)
        if requirement is not None:
            raise ConfigurationError({requirement.names[0]: requirement.why})

    def archive_policy(self, name: str) -> ArchivePolicy | None:
        """The policy of that name (names are unique regardless of case), or None."""
        return next((policy for policy in self.archive_policies if policy.name.lower() == name.lower()), None)


DEFAULTS = Settings()
"""The contract's defaults."""

SETTING_NAMES: tuple[str, ...] = tuple(declared.metadata["env"] for declared in fields(Settings))
"""Every setting the app reads."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """A need the settings do not meet: the settings that would meet it, and how, in words."""

    names: tuple[str, ...]
    why: str


def unmet_requirements(settings: Settings) -> list[Requirement]:
    """What the app needs to run and lacks: a queue, an outcome destination, a schedule when policies are set."""
    unmet: list[Requirement] = []
    if not settings.archive_queue_name:
        unmet.append(Requirement(("ARCHIVE_QUEUE_NAME",), "required: the queue the trigger listens on"))
    outcome_destination = _outcome_destination(settings)
    if outcome_destination is not None:
        unmet.append(outcome_destination)
    if settings.archive_policies and not settings.archive_policy_schedule:
        unmet.append(Requirement(("ARCHIVE_POLICY_SCHEDULE",), "required when ARCHIVE_POLICIES is set"))
    return unmet


def missing_settings(settings: Settings) -> list[str]:
    """Names of the settings that would meet an unmet requirement (for the health route)."""
    return [name for requirement in unmet_requirements(settings) for name in requirement.names]


def _outcome_destination(settings: Settings) -> Requirement | None:
    """One of OUTCOME_FILE, or OUTCOME_TOPIC_NAME with a namespace or connection string, is enough."""
    if settings.has_outcome_destination:
        return None
    namespaces = ("ServiceBusConnection__fullyQualifiedNamespace", "ServiceBusConnection", "OUTCOME_SERVICEBUS_NAMESPACE")
    if settings.outcome_topic_name:
        return Requirement(namespaces, "OUTCOME_TOPIC_NAME needs a namespace: set one of " + ", ".join(namespaces))
    return Requirement(
        ("OUTCOME_FILE", "OUTCOME_TOPIC_NAME"),
        "outcomes need a destination: OUTCOME_FILE, or OUTCOME_TOPIC_NAME with one of " + ", ".join(namespaces),
    )


def settings_table() -> str:
    """The README's configuration table, one row per declared setting."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for declared in fields(Settings):
        rows.append(f"| `{declared.metadata['env']}` | {_shown(declared.default)} | {declared.metadata['doc']} |")
    return "\n".join(rows)


def _parse(raw: str, parser: Callable[..., Any], *context: Any) -> Any:
    if not isinstance(raw, str):  # a local.settings.json may hold 4 or true where the environment holds "4"
        raise Malformed("must be a string")
    value = raw.strip()
    if not value:
        raise Malformed("holds only whitespace: leave it empty to unset it")
    if value.lower().startswith(KEY_VAULT_REFERENCE):
        # App Service leaves the reference text in place when it cannot resolve it.
        raise Malformed("is a Key Vault reference that did not resolve: check the app identity's access to the vault and secret")
    return parser(value, *context)


def _shown(default: Any) -> str:
    if default is None or default == ():
        return "—"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"
