"""Deployment files agree with the app, with Microsoft's role ids and with each other.

Every .bicep file parses (pycep-parser; nothing here compiles Bicep: CI's `bicep build` is the first
compile). infra/main.bicep sets every setting the app reads or the README lists it as optional; queue, topic,
subscription and connection names are the same in the app, Bicep, the local settings, the Service Bus
emulator and the CLI; every role id is the built-in role named beside it, per a vendored copy of Azure's
reference (tests/data/azure-built-in-roles.json), not per the code; the app and the operator get only what
they use; WEBHOOK_SECRET is a Key Vault reference; alerts and diagnostics exist; azd, docker compose, CI
and .funcignore point at the right things.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark.exceptions import LarkError

from archiver_cli.context import DEFAULT_SUBSCRIPTION
from shared.settings import SETTING_NAMES, Settings
from tests.bicep_text import Template, braces_outside_strings, parse_text, ref

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
MAIN = Template(INFRA / "main.bicep")
SERVICE_BUS = Template(INFRA / "modules" / "servicebus.bicep")
FUNCTION_APP = Template(INFRA / "modules" / "functionapp.bicep")
REGISTRY_ACCESS = Template(INFRA / "modules" / "registry-access.bicep")
KEY_VAULT = Template(INFRA / "modules" / "keyvault.bicep")
ALERTS = Template(INFRA / "modules" / "alerts.bicep")
STORAGE = Template(INFRA / "modules" / "storage.bicep")
MONITORING = Template(INFRA / "modules" / "monitoring.bicep")

HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_THREADPOOL_THREAD_COUNT",
}
"""What the Functions host and the Python worker read, besides the app's own settings."""
CONTRACT_SETTINGS = {"ARCHIVE_POLICIES", "ARCHIVE_POLICY_SCHEDULE", "ARCHIVE_POLICY_LOOKBACK_DAYS", "ARM_WRITE_RESERVE"}
"""Settings CONTRACT §1 declares that shared/settings.py may not read yet (the policy sweep lands separately);
Bicep deploys them already. Once SETTING_NAMES holds them this set changes nothing."""
NOT_ON_FLEX = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "AzureWebJobsStorage",
}
"""Settings the Flex Consumption plan refuses or replaces with functionAppConfig (and no storage key strings)."""
EMULATOR_CONNECTION = (
    "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;"
    "UseDevelopmentEmulator=true;"
)
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
DIAGNOSTIC_SETTINGS = "Microsoft.Insights/diagnosticSettings"
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


ROLE_TABLE = ROOT / "tests" / "data" / "azure-built-in-roles.json"
BUILT_IN_ROLES: dict[str, str] = {role["name"]: role["id"] for role in _json(ROLE_TABLE)["roles"]}
"""Role name → id, as Azure's built-in roles reference lists them (vendored; independent of infra/)."""
SAMPLE = _json(ROOT / "local.settings.sample.json")["Values"]
EMULATOR_SETTINGS = _json(ROOT / "local.settings.emulator.json")["Values"]
EMULATOR_CONFIG = _json(ROOT / "servicebus-emulator" / "Config.json")["UserConfig"]
APP_SETTINGS: dict[str, Any] = MAIN.variable("appSettings")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _readme_optional_settings() -> set[str]:
    section = README.split("#### Settings the template does not set", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def _conditional(expression: Any) -> tuple[Any, Any, Any]:
    """(condition, true value, false value) of `c ? a : b`."""
    operator = expression["operator"]
    assert operator["type"] == "conditional", expression
    operands = operator["operands"]
    return ref(operands["condition"]), ref(operands["true_value"]), ref(operands["false_value"])


def _not_empty(expression: Any) -> Any:
    """x of `!empty(x)`."""
    operator = expression["operator"]
    assert operator["type"] == "not", expression
    function = operator["operands"]["bool_value"]["function"]
    assert function["type"] == "empty", expression
    return ref(function["parameters"]["item_to_test"])


def _string_of(param: str) -> dict[str, Any]:
    """The tree of `string(param)`."""
    return {"function": {"type": "string", "parameters": {"value_to_convert": param}}}


def _role_of(assignment: dict[str, Any]) -> Any:
    """The role name argument of `subscriptionResourceId('Microsoft.Authorization/roleDefinitions', x)`, or the id as written."""
    role = assignment["properties"]["roleDefinitionId"]
    if isinstance(role, dict) and "function" in role and role["function"]["type"] == "subscription_resource_id":
        parameters = role["function"]["parameters"]
        assert parameters["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        return ref(parameters["resource_name_1"])
    return ref(role)


# -- every file parses ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_every_bicep_file_parses(path: Path) -> None:
    """pycep-parser accepts each file: the first syntax check (no compiler here; CI's `bicep build` is the first compile)."""
    tree = parse_text(path.read_text(encoding="utf-8"))
    assert tree["resources"] or tree.get("modules"), f"{path.name} declares nothing"


def _broken(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


SERVICE_BUS_TEXT = SERVICE_BUS.text


@pytest.mark.parametrize(
    "broken",
    [
        SERVICE_BUS_TEXT[: SERVICE_BUS_TEXT.rindex("}")],
        _broken(SERVICE_BUS_TEXT, "namespaces@2024-01-01' = {", "namespaces@2024-01-01' {"),
        _broken(SERVICE_BUS_TEXT, "'Standard' // topics", "'Standard // topics"),
        _broken(SERVICE_BUS_TEXT, "param location string", "parm location string"),
        _broken(SERVICE_BUS_TEXT, "disableLocalAuth: true", "disableLocalAuth true"),
        _broken(SERVICE_BUS_TEXT, "roles.dataReceiver)\n", "roles.dataReceiver\n"),
    ],
    ids=["last-brace-missing", "equals-missing", "string-unclosed", "keyword-misspelt", "colon-missing", "parenthesis-unclosed"],
)
def test_the_syntax_check_rejects_a_broken_file(broken: str) -> None:
    """The parse check is not vacuous: a file with one syntax error fails it."""
    with pytest.raises((LarkError, ValueError)):
        parse_text(broken)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dropping_any_brace_of_a_module_is_a_syntax_error(data: st.DataObject) -> None:
    """Any one `{` or `}` outside strings and comments removed from any module: the parse fails."""
    path = data.draw(st.sampled_from(BICEP_FILES), label="file")
    text = path.read_text(encoding="utf-8")
    at = data.draw(st.sampled_from(braces_outside_strings(text)), label="brace offset")
    with pytest.raises((LarkError, ValueError)):
        parse_text(text[:at] + text[at + 1 :])


# -- role ids are Azure's, checked against the role named beside each ---------------------------------


def _role_id_lines() -> list[tuple[str, int, str, str]]:
    """(file, line number, id, the `// name` beside it) for every GUID literal in infra/."""
    found = []
    for path in BICEP_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for guid in re.findall(rf"'({GUID})'", line):
                comment = line.split("//", 1)[1].strip() if "//" in line else ""
                found.append((path.name, number, guid, comment))
    return found


ROLE_ID_LINES = _role_id_lines()


@pytest.mark.parametrize(("file", "line", "role_id", "name"), ROLE_ID_LINES, ids=[f"{f}:{n}" for f, n, _, _ in ROLE_ID_LINES])
def test_every_role_id_in_infra_is_the_built_in_role_named_beside_it(file: str, line: int, role_id: str, name: str) -> None:
    """Each id literal carries `// <role name>`, and Azure's reference gives that name this id (a typo'd id fails here)."""
    assert name, f"{file}:{line}: role id {role_id} without `// <built-in role name>` beside it"
    assert name in BUILT_IN_ROLES, f"{file}:{line}: {name!r} is not in tests/data/azure-built-in-roles.json"
    assert role_id.lower() == BUILT_IN_ROLES[name], f"{file}:{line}: {name} is {BUILT_IN_ROLES[name]}, not {role_id}"


def test_the_role_ids_checked_are_every_role_the_template_assigns() -> None:
    """The check above sees the roles in use: Service Bus, Key Vault, monitoring and storage data roles."""
    assigned = {name for _, _, _, name in ROLE_ID_LINES}
    assert assigned == {
        "Azure Service Bus Data Receiver", "Azure Service Bus Data Sender", "Key Vault Secrets User",
        "Monitoring Metrics Publisher",
        "Storage Blob Data Owner",
    }
    assert all(re.fullmatch(GUID, role_id) for role_id in BUILT_IN_ROLES.values())


def test_every_role_assignment_grants_a_vendored_role_or_the_runs_role() -> None:
    """No assignment names an id inline: it is a variable holding a checked id, or the registry's runs role."""
    for path in BICEP_FILES:
        template = Template(path)
        for symbol, assignment in template.of_type(ROLE_ASSIGNMENT).items():
            role = _role_of(assignment)
            if path.name == "registry-access.bicep":
                assert role == "effectiveRoleDefinitionId", symbol
                continue
            assert not re.search(GUID, str(role)), f"{path.name} {symbol}: inline role id"
            value = template.variable(role.split(".")[0])
            value = value[role.split(".")[1]] if "." in role else value
            assert value in BUILT_IN_ROLES.values(), f"{path.name} {symbol}: {role} = {value}"


def test_the_readme_ci_condition_lists_exactly_the_built_in_roles_in_use() -> None:
    """README, Deployer rights: the RBAC Administrator condition allows the ids the template assigns, no others."""
    section = README.split("### Deployer rights", 1)[1].split("\n## ", 1)[0]
    condition = section.split("```text", 1)[1].split("```", 1)[0]
    assert "Microsoft.Authorization/roleAssignments:RoleDefinitionId" in condition
    built_in = {role_id for _, _, role_id, _ in ROLE_ID_LINES}
    allowed = {guid.lower() for guid in re.findall(GUID, condition)}
    assert allowed - {"00000000-0000-0000-0000-000000000000"} == built_in
    for role in ("Owner", "User Access Administrator", "Role Based Access Control Administrator"):
        assert role in section, role


# -- settings ------------------------------------------------------------------------------------


def test_every_app_setting_is_deployed_or_documented_as_optional() -> None:
    """SETTING_NAMES = the app settings of main.bicep + the README's optional list; no name is in both."""
    optional = _readme_optional_settings()
    app_names_in_bicep = set(APP_SETTINGS) & set(SETTING_NAMES)
    assert set(SETTING_NAMES) - app_names_in_bicep - optional == set(), "neither deployed nor documented as optional"
    assert app_names_in_bicep & optional == set(), "both deployed and documented as left out"
    assert optional <= set(SETTING_NAMES), "the README lists a setting the app does not read"


def test_bicep_sets_only_known_settings_and_none_that_flex_refuses() -> None:
    """A misspelt name (ARCHIVE_QUEUE instead of ARCHIVE_QUEUE_NAME) would be read by nobody."""
    assert set(APP_SETTINGS) <= set(SETTING_NAMES) | CONTRACT_SETTINGS | HOST_SETTINGS
    assert set(APP_SETTINGS) & NOT_ON_FLEX == set()


@pytest.mark.parametrize(
    ("setting", "param", "default"),
    [
        ("ARCHIVE_POLICIES", "archivePolicies", ""),
        ("ARCHIVE_POLICY_SCHEDULE", "archivePolicySchedule", "0 */15 * * * *"),
        ("ARCHIVE_POLICY_LOOKBACK_DAYS", "archivePolicyLookbackDays", 30),
        ("ARM_WRITE_RESERVE", "armWriteReserve", 20),
    ],
    ids=["policies-off-by-default", "schedule-every-15-minutes", "lookback-30-days", "write-reserve-20"],
)
def test_the_contract_policy_settings_are_deployed_with_the_contract_defaults(setting: str, param: str, default: Any) -> None:
    """CONTRACT §1's policy settings come from parameters whose defaults are the contract's; no policy unless given."""
    value = APP_SETTINGS[setting]
    assert ref(value) == param or value == _string_of(param)
    assert MAIN.default(param) == default


def test_local_settings_sample_lists_every_setting_and_is_valid() -> None:
    """local.settings.sample.json holds every setting the app reads, with values Settings accepts."""
    assert set(SETTING_NAMES) <= set(SAMPLE)
    Settings.from_env(SAMPLE)


def test_emulator_settings_use_the_emulator_connection_string() -> None:
    """local.settings.emulator.json: the emulator's connection string, no identity-based connection, valid settings."""
    assert EMULATOR_SETTINGS["ServiceBusConnection"] == EMULATOR_CONNECTION
    assert not any(name.startswith("ServiceBusConnection__") for name in EMULATOR_SETTINGS)
    assert "OUTCOME_SERVICEBUS_NAMESPACE" not in EMULATOR_SETTINGS and "OUTCOME_FILE" not in EMULATOR_SETTINGS
    local_only = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"}
    known = set(SETTING_NAMES) | CONTRACT_SETTINGS | HOST_SETTINGS | local_only
    assert set(EMULATOR_SETTINGS) <= known
    settings_ = Settings.from_env(EMULATOR_SETTINGS)
    assert settings_.has_outcome_destination and settings_.arm_endpoint.startswith("http://127.0.0.1:")


# -- WEBHOOK_SECRET lives in Key Vault -------------------------------------------------------------------


def test_webhook_secret_is_always_a_key_vault_reference() -> None:
    """The app setting is `@Microsoft.KeyVault(SecretUri=…)` of the vault's secret, never the value; off only when asked."""
    condition, reference, off = _conditional(APP_SETTINGS["WEBHOOK_SECRET"])
    assert (condition, off) == ("webhookSignatures", "") and MAIN.default("webhookSignatures") is True
    assert reference == "@Microsoft.KeyVault(SecretUri=${keyVault.outputs.webhookReferenceUri})"
    assert not re.search(r"\bwebhookSecret\b", json.dumps(APP_SETTINGS)), "the secret's value reaches the app settings"
    assert "secure" in MAIN.decorators("webhookSecret") and "secure" in KEY_VAULT.decorators("webhookSecret")
    assert ref(MAIN.module("keyVault")["params"]["webhookSecret"]) == "webhookSecret"
    assert "webhookReferenceUri" in KEY_VAULT.outputs()
    assert not any("secure" in FUNCTION_APP.decorators(name) for name in FUNCTION_APP.params()), "no secret passes to the site"


def test_a_deployment_without_the_secret_keeps_the_vaults_secret() -> None:
    """The secret (and its grant) are written only with a new value; incremental deployments leave them otherwise."""
    assert _not_empty(KEY_VAULT.condition("secret")) == "webhookSecret"
    assert KEY_VAULT.default("webhookSecret") == "" and MAIN.default("webhookSecret") == ""
    assert KEY_VAULT.resource("secret")["properties"]["value"] == "webhookSecret"
    assert KEY_VAULT.resource("secret")["parent"] == "vault"


def test_the_vault_uses_rbac_and_purge_protection_and_the_app_reads_only_its_secret() -> None:
    """RBAC authorization, soft delete with purge protection; Key Vault Secrets User for the app, scoped to the secret."""
    vault = KEY_VAULT.resource("vault")["properties"]
    assert (vault["enableRbacAuthorization"], vault["enablePurgeProtection"], vault["enableSoftDelete"]) == (True, True, True)
    assert "accessPolicies" not in vault
    assignments = KEY_VAULT.of_type(ROLE_ASSIGNMENT)
    assert list(assignments) == ["appReadsSecret"]
    grant = assignments["appReadsSecret"]
    assert grant["scope"] == "secret" and grant["properties"]["principalId"] == "appPrincipalId"
    assert KEY_VAULT.variable(_role_of(grant)) == BUILT_IN_ROLES["Key Vault Secrets User"]


def test_the_site_resolves_references_with_its_user_assigned_identity() -> None:
    """keyVaultReferenceIdentity is the user-assigned identity (the default, system-assigned, does not exist here)."""
    site = FUNCTION_APP.resource("site")
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    assert site["identity"]["type"] == "UserAssigned"
    assert ref(MAIN.module("keyVault")["params"]["appPrincipalId"]) == "identity.outputs.principalId"


# -- names agree everywhere -----------------------------------------------------------------------


def _emulator_queue() -> dict[str, Any]:
    (namespace,) = EMULATOR_CONFIG["Namespaces"]
    (queue,) = namespace["Queues"]
    return queue


def _emulator_topic() -> dict[str, Any]:
    (namespace,) = EMULATOR_CONFIG["Namespaces"]
    (topic,) = namespace["Topics"]
    return topic


def test_queue_and_topic_names_agree_everywhere() -> None:
    """ARCHIVE_QUEUE_NAME and OUTCOME_TOPIC_NAME: sample settings = emulator settings = Bicep defaults = emulator entities."""
    from tests.support import BASE_SETTINGS

    queue, topic = SAMPLE["ARCHIVE_QUEUE_NAME"], SAMPLE["OUTCOME_TOPIC_NAME"]
    assert EMULATOR_SETTINGS["ARCHIVE_QUEUE_NAME"] == queue and EMULATOR_SETTINGS["OUTCOME_TOPIC_NAME"] == topic
    assert MAIN.default("archiveQueueName") == queue and MAIN.default("outcomeTopicName") == topic
    assert APP_SETTINGS["ARCHIVE_QUEUE_NAME"] == "archiveQueueName" and APP_SETTINGS["OUTCOME_TOPIC_NAME"] == "outcomeTopicName"
    assert SERVICE_BUS.resource("archiveQueue")["name"] == "archiveQueueName"
    assert MAIN.module("serviceBus")["params"]["archiveQueueName"] == "archiveQueueName"
    assert _emulator_queue()["Name"] == queue and _emulator_topic()["Name"] == topic
    assert BASE_SETTINGS["ARCHIVE_QUEUE_NAME"] == queue


def test_the_failed_outcomes_subscription_agrees_everywhere_and_keeps_expired_letters() -> None:
    """One subscription name and one SQL filter, outcome = 'failed', in Bicep, the emulator and the CLI; expiry dead-letters."""
    name = MAIN.default("failedOutcomesSubscriptionName")
    assert name == DEFAULT_SUBSCRIPTION
    (emulated,) = [s for s in _emulator_topic()["Subscriptions"] if s["Name"] == name]
    (rule,) = emulated["Rules"]
    assert rule["Properties"]["FilterType"] == "Sql"
    assert rule["Properties"]["SqlFilter"]["SqlExpression"] == "outcome = 'failed'"
    failed_only = SERVICE_BUS.resource("failedOnly")
    assert failed_only["parent"] == "failedOutcomes" and failed_only["properties"]["filterType"] == "SqlFilter"
    assert failed_only["properties"]["sqlFilter"]["sqlExpression"].replace("\\'", "'") == "outcome = 'failed'"
    subscription = SERVICE_BUS.resource("failedOutcomes")
    assert subscription["name"] == "failedOutcomesSubscriptionName"
    assert subscription["properties"]["deadLetteringOnMessageExpiration"] is True


def test_the_connection_name_agrees_with_the_trigger() -> None:
    """The trigger binds connection ServiceBusConnection and %ARCHIVE_QUEUE_NAME%; Bicep and the sample use that prefix."""
    from function_app import app

    (trigger,) = [
        binding
        for function in app.get_functions()
        for binding in function.get_bindings_dict()["bindings"]
        if binding["type"] == "serviceBusTrigger"
    ]
    assert trigger["connection"] == "ServiceBusConnection" and trigger["queueName"] == "%ARCHIVE_QUEUE_NAME%"
    assert ref(APP_SETTINGS["ServiceBusConnection__fullyQualifiedNamespace"]) == "serviceBus.outputs.fullyQualifiedNamespace"
    assert APP_SETTINGS["ServiceBusConnection__credential"] == "managedidentity"
    for suffix in ("fullyQualifiedNamespace", "credential", "clientId"):
        assert f"ServiceBusConnection__{suffix}" in SAMPLE


def test_the_user_assigned_identity_is_the_apps_client_id_everywhere() -> None:
    """AZURE_CLIENT_ID and ServiceBusConnection__clientId are the user-assigned identity's client id; the site runs as it."""
    names = ("AZURE_CLIENT_ID", "ServiceBusConnection__clientId", "AzureWebJobsStorage__clientId")
    client_ids = {ref(APP_SETTINGS[name]) for name in names}
    assert client_ids == {"identity.outputs.clientId"}
    assert MAIN.modules()["identity"] == "modules/identity.bicep"
    site = FUNCTION_APP.resource("site")
    assert site["identity"]["userAssignedIdentities"] == {"'${identityId}'": {}}
    authentication = site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert authentication["userAssignedIdentityResourceId"] == "identityId"


def test_max_delivery_count_is_one_number() -> None:
    """The queue's maxDeliveryCount and MAX_DELIVERY_COUNT come from one parameter, whose default is the sample's."""
    default = MAIN.default("maxDeliveryCount")
    assert default == int(SAMPLE["MAX_DELIVERY_COUNT"]) == Settings().max_delivery_count
    assert default == int(EMULATOR_SETTINGS["MAX_DELIVERY_COUNT"])
    assert APP_SETTINGS["MAX_DELIVERY_COUNT"] == _string_of("maxDeliveryCount")
    assert MAIN.module("serviceBus")["params"]["maxDeliveryCount"] == "maxDeliveryCount"
    assert SERVICE_BUS.resource("archiveQueue")["properties"]["maxDeliveryCount"] == "maxDeliveryCount"
    assert _emulator_queue()["Properties"]["MaxDeliveryCount"] == default


# -- the Service Bus namespace and who may use it ----------------------------------------------------


def test_service_bus_local_auth_is_off_and_both_entities_detect_duplicates() -> None:
    """disableLocalAuth on the namespace; duplicate detection on the queue and the topic (Bicep and emulator)."""
    assert SERVICE_BUS.resource("namespace")["properties"]["disableLocalAuth"] is True
    for symbol in ("archiveQueue", "outcomeTopic"):
        assert SERVICE_BUS.resource(symbol)["properties"]["requiresDuplicateDetection"] is True
    assert _emulator_queue()["Properties"]["RequiresDuplicateDetection"] is True
    assert _emulator_topic()["Properties"]["RequiresDuplicateDetection"] is True
    assert SERVICE_BUS.resource_type("archiveQueue").startswith("Microsoft.ServiceBus/namespaces/queues@")
    assert SERVICE_BUS.resource_type("outcomeTopic").startswith("Microsoft.ServiceBus/namespaces/topics@")


RECEIVER, SENDER = "roles.dataReceiver", "roles.dataSender"


def _grants(principal: str) -> set[tuple[str, str]]:
    """(scope, role variable) of every Service Bus role assignment to one principal parameter."""
    return {
        (assignment["scope"], _role_of(assignment))
        for assignment in SERVICE_BUS.of_type(ROLE_ASSIGNMENT).values()
        if assignment["properties"]["principalId"] == principal
    }


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        ("appPrincipalId", {("archiveQueue", RECEIVER), ("archiveQueue", SENDER), ("outcomeTopic", SENDER)}),
        ("operatorPrincipalId", {("archiveQueue", RECEIVER), ("archiveQueue", SENDER), ("outcomeTopic", RECEIVER)}),
    ],
    ids=["app-receives-queue-sends-queue-and-topic", "operator-sends-receives-queue-receives-outcomes"],
)
def test_each_principal_holds_exactly_the_data_roles_it_uses(principal: str, expected: set[tuple[str, str]]) -> None:
    """Least privilege: each role on the entity that needs it; nothing on the namespace; the operator never sends outcomes."""
    assert _grants(principal) == expected


def test_operator_grants_are_conditional_and_opt_in() -> None:
    """Every operator assignment needs an operator id, which main.bicep passes only with grantOperatorAccess (default off)."""
    for template in (SERVICE_BUS, REGISTRY_ACCESS):
        for symbol, assignment in template.of_type(ROLE_ASSIGNMENT).items():
            if assignment["properties"]["principalId"] == "operatorPrincipalId":
                assert _not_empty(template.condition(symbol)) == "operatorPrincipalId", symbol
                assert "principalType" not in assignment["properties"], "a user or a group: ARM finds out which"
    assert MAIN.default("grantOperatorAccess") is False and MAIN.default("grantOperatorRunsWrite") is False
    assert _conditional(MAIN.variable("operatorId")) == ("grantOperatorAccess", "operatorPrincipalId", "")
    assert MAIN.module("serviceBus")["params"]["operatorPrincipalId"] == "operatorId"
    registry_operator = MAIN.module("registryAccess")["params"]["operatorPrincipalId"]
    assert _conditional(registry_operator) == ("grantOperatorRunsWrite", "operatorId", "")
    given = _json(INFRA / "main.parameters.json")["parameters"]
    assert given["grantOperatorAccess"]["value"] == "${GRANT_OPERATOR_ACCESS=false}"
    assert given["grantOperatorRunsWrite"]["value"] == "${GRANT_OPERATOR_RUNS_WRITE=false}"


def test_no_role_is_assigned_on_a_namespace_resource_group_or_subscription() -> None:
    """Every assignment is scoped to one resource: an entity, the registry, the storage account, the secret, App Insights."""
    for path in BICEP_FILES:
        template = Template(path)
        for symbol, assignment in template.of_type(ROLE_ASSIGNMENT).items():
            scope = assignment.get("scope")
            assert isinstance(scope, str) and scope in template.resources(), f"{path.name} {symbol}: scope {scope!r}"
            wide = {"Microsoft.ServiceBus/namespaces", "Microsoft.Resources/resourceGroups"}
            assert template.resources()[scope]["type"] not in wide, f"{path.name} {symbol}: scope {scope}"


def test_the_registry_role_grants_exactly_runs_read_and_write_on_the_registry() -> None:
    """A custom role with runs/read and runs/write, assignable in the registry's group, assigned on the registry."""
    definition = REGISTRY_ACCESS.resource("runsReadWrite")["properties"]
    (permissions,) = definition["permissions"]
    assert permissions["actions"] == [f"Microsoft.ContainerRegistry/registries/runs/{verb}" for verb in ("read", "write")]
    assert definition["type"] == "CustomRole" and permissions["notActions"] == []
    assert REGISTRY_ACCESS.resource("appUpdatesRuns")["scope"] == "registry"
    assert REGISTRY_ACCESS.resource_type("registry").startswith("Microsoft.ContainerRegistry/registries@")
    call = MAIN.module("registryAccess")
    scope = call["scope"]["function"]["parameters"]
    assert scope == {"resource_group_name": "registryResourceGroup", "subscription_id": "registrySubscriptionId"}
    assert MAIN.default("registryId") is None


def test_a_role_created_out_of_band_replaces_the_custom_role() -> None:
    """registryRoleDefinitionId set: no role definition is written (the deployer needs no roleDefinitions/write)."""
    empty_role_id = {"function": {"type": "empty", "parameters": {"item_to_test": "roleDefinitionId"}}}
    assert REGISTRY_ACCESS.condition("runsReadWrite") == empty_role_id
    assert MAIN.module("registryAccess")["params"]["roleDefinitionId"] == "registryRoleDefinitionId"
    assert MAIN.default("registryRoleDefinitionId") == ""
    given = _json(INFRA / "main.parameters.json")["parameters"]
    assert given["registryRoleDefinitionId"]["value"] == "${REGISTRY_ROLE_DEFINITION_ID}"


# -- the function app -----------------------------------------------------------------------------


def test_the_function_app_is_python_3_11_on_flex_consumption() -> None:
    """FC1 / FlexConsumption plan, Linux function app, runtime python 3.11, identity-based deployment storage."""
    assert FUNCTION_APP.resource("plan")["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = FUNCTION_APP.resource("site")
    assert site["kind"] == "functionapp,linux"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert FUNCTION_APP.resource("settings") == {"parent": "site", "name": "appsettings", "properties": "appSettings"}


@pytest.mark.parametrize("kind", ["ftp", "scm"], ids=["ftp", "scm"])
def test_basic_publishing_credentials_are_off(kind: str) -> None:
    """Deployment signs in with Entra ID only: the ftp and scm basic credentials policies say allow: false."""
    policies = FUNCTION_APP.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies").values()
    (policy,) = [body for body in policies if body["name"] == kind]
    assert policy["parent"] == "site" and policy["properties"] == {"allow": False}


def test_no_ftps_state_which_flex_consumption_rejects() -> None:
    """siteConfig.ftpsState is refused on Flex Consumption: it appears nowhere."""
    assert "ftpsState" not in json.dumps(FUNCTION_APP.resource("site"))


def test_application_insights_and_storage_are_deployed_without_keys() -> None:
    """Storage shared keys and Application Insights local auth are off; the host uses the identity."""
    assert STORAGE.resource("storage")["properties"]["allowSharedKeyAccess"] is False
    assert MONITORING.resource("applicationInsights")["properties"]["DisableLocalAuth"] is True
    assert APP_SETTINGS["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "Authorization=AAD" in APP_SETTINGS["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


# -- alerts and diagnostics -------------------------------------------------------------------------------


def test_dead_letters_on_the_archive_queue_raise_a_metric_alert() -> None:
    """DeadletteredMessages of the namespace, EntityName = the archive queue, Maximum > 0, to the action group."""
    alert = ALERTS.resource("deadLetters")["properties"]
    (criterion,) = alert["criteria"]["allOf"]
    assert alert["criteria"]["'odata.type'"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    assert (criterion["metricNamespace"], criterion["metricName"]) == ("Microsoft.ServiceBus/namespaces", "DeadletteredMessages")
    assert criterion["dimensions"] == [{"name": "EntityName", "operator": "Include", "values": ["archiveQueueName"]}]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Maximum", "GreaterThan", 0)
    assert alert["scopes"] == ["namespaceId"]
    assert _conditional(alert["actions"])[2] == [{"actionGroupId": "actionGroupId"}]
    call = MAIN.module("alerts")["params"]
    assert call["archiveQueueName"] == "archiveQueueName" and ref(call["namespaceId"]) == "serviceBus.outputs.id"
    assert call["actionGroupId"] == "actionGroupId" and MAIN.default("actionGroupId") == ""


def test_failed_policy_sweeps_raise_a_log_alert() -> None:
    """A scheduled query on the app's traces counts ArchivePolicySwept lines that failed; more than none fires."""
    rule = ALERTS.resource("failedSweeps")
    assert ALERTS.resources()["failedSweeps"]["type"] == "Microsoft.Insights/scheduledQueryRules" and rule["kind"] == "LogAlert"
    (criterion,) = rule["properties"]["criteria"]["allOf"]
    query = ALERTS.variable(criterion["query"])
    assert query.lstrip().startswith("AppTraces") and '"ArchivePolicySwept"' in query and '"failed"' in query
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "GreaterThan", 0)
    assert rule["properties"]["scopes"] == ["workspaceId"]
    assert _conditional(rule["properties"]["actions"]["actionGroups"])[2] == ["actionGroupId"]


@pytest.mark.parametrize(
    ("template", "resource"),
    [
        (SERVICE_BUS, "namespace"), (FUNCTION_APP, "site"), (STORAGE, "storage"), (STORAGE, "storage.blobServices"),
        (KEY_VAULT, "vault"),
    ],
    ids=["namespace", "function-app", "storage-account", "blob-service", "key-vault"],
)
def test_diagnostics_go_to_the_workspace(template: Template, resource: str) -> None:
    """Each of these has a diagnostic setting to the workspace param, which main.bicep fills with the existing workspace."""
    settings_ = [body for body in template.of_type(DIAGNOSTIC_SETTINGS).values() if ref(body["scope"]) == resource]
    assert len(settings_) == 1 and settings_[0]["properties"]["workspaceId"] == "workspaceId"
    assert settings_[0]["properties"].get("logs") or settings_[0]["properties"].get("metrics")
    (symbol,) = [symbol for symbol, path in MAIN.modules().items() if path == f"modules/{template.path.name}"]
    assert ref(MAIN.module(symbol)["params"]["workspaceId"]) == "monitoring.outputs.workspaceId"


# -- the modules are wired consistently (what `bicep build` would catch first) ----------------------


@pytest.mark.parametrize("module", sorted(MAIN.modules()), ids=sorted(MAIN.modules()))
def test_each_module_call_passes_its_parameters_and_uses_its_outputs(module: str) -> None:
    """Every parameter passed is declared, every required one is passed, every output used exists."""
    target = Template(INFRA / MAIN.modules()[module])
    passed = set(MAIN.module(module)["params"])
    assert passed <= set(target.params()), f"{module}: unknown parameters {passed - set(target.params())}"
    assert target.required_params() <= passed, f"{module}: missing parameters {target.required_params() - passed}"
    used = set(re.findall(rf"\b{module}\.outputs\.(\w+)", MAIN.text))
    assert used <= target.outputs(), f"{module}: unknown outputs {used - target.outputs()}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_every_scope_and_parent_names_a_declared_resource(path: Path) -> None:
    """`scope: x`, `scope: x::y` and `parent: x` refer to resources of the same file (in main.bicep: the resource group)."""
    template = Template(path)
    bodies = [template.resource(symbol) for symbol in template.resources()]
    bodies += [template.module(symbol) for symbol in template.modules()]
    for body in bodies:
        for key in ("scope", "parent"):
            reference = ref(body.get(key))
            if isinstance(reference, str):
                assert reference.split(".")[0] in template.resources(), f"{path.name}: {key} {reference} is not a resource here"


def test_the_parameters_file_sets_declared_parameters_and_every_required_one() -> None:
    """infra/main.parameters.json (azd) names only parameters of main.bicep, and all that have no default."""
    given = set(_json(INFRA / "main.parameters.json")["parameters"])
    assert given <= set(MAIN.params())
    assert MAIN.required_params() <= given


# -- azd, docker compose, .funcignore, CI -------------------------------------------------------------


def test_azure_yaml_deploys_this_folder_to_the_tagged_function_app() -> None:
    """azd: one python function service whose name is the site's azd-service-name tag; infra is infra/main.bicep."""
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (name, service), = azure["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert FUNCTION_APP.resource("site")["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": name}
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert MAIN.tree["globals"]["scope"]["value"] == "subscription"


def test_docker_compose_runs_the_emulator_with_this_config() -> None:
    """The Service Bus emulator mounts servicebus-emulator/Config.json and publishes AMQP on 5672; Azurite is there too."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    emulator = services["servicebus"]
    assert emulator["image"].startswith("mcr.microsoft.com/azure-messaging/servicebus-emulator")
    assert "./servicebus-emulator/Config.json:/ServiceBus_Emulator/ConfigFiles/Config.json:ro" in emulator["volumes"]
    assert "5672:5672" in emulator["ports"]
    assert emulator["environment"]["SQL_SERVER"] in services
    assert any(service["image"].startswith("mcr.microsoft.com/azure-storage/azurite") for service in services.values())
    (namespace,) = EMULATOR_CONFIG["Namespaces"]
    assert namespace["Name"] == "sbemulatorns" and EMULATOR_CONFIG["Logging"]["Type"]


def test_funcignore_keeps_deployment_and_dev_files_out_of_the_package() -> None:
    """Nothing but the app is deployed: infra, CI, compose, emulator config, the OpenAPI file and azd's files stay home."""
    ignored = set((ROOT / ".funcignore").read_text().split())
    wanted = {
        "infra", ".github", "docker-compose.yml", "servicebus-emulator", "openapi.yaml", "azure.yaml", "tests",
        "emulators", "local.settings.emulator.json", ".azure",
    }
    assert wanted <= ignored


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _workflow(name: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_tag_named(path: Path) -> None:
    """`uses: owner/repo@<40 hex> # vX.Y.Z`: a moved tag cannot change what runs."""
    uses = [line.strip() for line in path.read_text().splitlines() if re.match(r"\s*(?:-\s*)?uses:", line)]
    assert uses, f"{path.name} uses no action"
    for line in uses:
        assert re.fullmatch(r"(?:-\s*)?uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+(?:\.\d+)*", line), line


def test_ci_runs_make_test_on_push_and_pull_request_and_compiles_the_bicep() -> None:
    """ci.yml: push and pull_request trigger `make test`, and a job runs `bicep build` on main.bicep (the first compile)."""
    ci = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    assert any("make test" in str(step.get("run", "")) for step in _steps(ci))
    (setup,) = [step for step in _steps(ci) if str(step.get("uses", "")).startswith("actions/setup-python@")]
    assert setup["with"]["python-version"] == "3.11"
    assert any("bicep build --file infra/main.bicep" in str(step.get("run", "")) for step in _steps(ci))


def test_deploy_logs_in_with_oidc_and_publishes_the_app() -> None:
    """deploy.yml: id-token permission, azure/login with client, tenant and subscription ids (no secret), then a deploy."""
    deploy = _workflow("deploy.yml")
    (job,) = [
        job for job in deploy["jobs"].values() if any(str(s.get("uses", "")).startswith("azure/login@") for s in job["steps"])
    ]
    assert {**(deploy.get("permissions") or {}), **(job.get("permissions") or {})}["id-token"] == "write"
    steps = job["steps"]
    (login,) = [step for step in steps if str(step.get("uses", "")).startswith("azure/login@")]
    assert set(login["with"]) >= {"client-id", "tenant-id", "subscription-id"} and "creds" not in login["with"]
    publishes = [
        step for step in steps
        if str(step.get("uses", "")).lower().startswith("azure/functions-action@")
        or "func azure functionapp publish" in str(step.get("run", ""))
    ]
    assert publishes, "no Azure/functions-action or func azure functionapp publish step"
    assert steps.index(login) < steps.index(publishes[0])


def test_readme_walks_through_deploying_and_operating() -> None:
    """The README's commands exist: azd up, az deployment + func publish, sending, watching, replaying, live tests."""
    assert README.startswith("# ACR Run Archiver\n\n```sh\nmake demo ")
    for command in (
        "azd up", "azd env set ACR_REGISTRY_ID", "az deployment sub create", "func azure functionapp publish",
        "acr-archiver send", "acr-archiver outcomes", "acr-archiver dead-letters resubmit", "acr-archiver archive",
        "docker compose up", "func start", "pytest -m live", EMULATOR_CONNECTION, "azd env set GRANT_OPERATOR_ACCESS true",
    ):
        assert command in README, command
    assert "Nothing in this repository compiles Bicep" in README
