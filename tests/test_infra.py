"""Deployment files agree with the app and with each other.

infra/main.bicep sets every setting the app reads or the README lists it as optional; local settings hold
them all; queue, topic, subscription and connection names are the same in the app, Bicep, the local
settings, the Service Bus emulator and the CLI; the Bicep modules are wired consistently (checked as text:
there is no Bicep compiler here); azd, docker compose, CI and .funcignore point at the right things.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver_cli.context import DEFAULT_SUBSCRIPTION
from shared.settings import SETTING_NAMES, Settings
from tests.bicep_text import Bicep, properties

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = Bicep(INFRA / "main.bicep")
SERVICE_BUS = Bicep(INFRA / "modules" / "servicebus.bicep")
FUNCTION_APP = Bicep(INFRA / "modules" / "functionapp.bicep")
REGISTRY_ACCESS = Bicep(INFRA / "modules" / "registry-access.bicep")

HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_THREADPOOL_THREAD_COUNT",
}
"""What the Functions host and the Python worker read, besides the app's own settings."""
NOT_ON_FLEX = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "AzureWebJobsStorage",
}
"""Settings the Flex Consumption plan refuses or replaces with functionAppConfig (and no storage key strings)."""
ROLE_IDS = {
    "dataReceiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",  # Azure Service Bus Data Receiver
    "dataSender": "69a216fc-b8fb-44d8-bc22-1f3c2552ae39",  # Azure Service Bus Data Sender
}
EMULATOR_CONNECTION = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _unquote(value: str) -> str:
    assert value.startswith("'") and value.endswith("'"), value
    return value[1:-1]


SAMPLE = _json(ROOT / "local.settings.sample.json")["Values"]
EMULATOR_SETTINGS = _json(ROOT / "local.settings.emulator.json")["Values"]
EMULATOR_CONFIG = _json(ROOT / "servicebus-emulator" / "Config.json")["UserConfig"]
APP_SETTINGS = properties(MAIN.var_block("appSettings"))
SECRET_SETTINGS = properties(re.search(r"secretAppSettings:\s*\{(.*?)\}", MAIN.text, re.DOTALL).group(1))  # type: ignore[union-attr]
BICEP_SETTINGS = {**APP_SETTINGS, **SECRET_SETTINGS}


def _readme_optional_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("#### Settings the template does not set", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


# -- settings ------------------------------------------------------------------------------------


def test_every_app_setting_is_deployed_or_documented_as_optional() -> None:
    """SETTING_NAMES = the app settings of main.bicep + the README's optional list; no name is in both."""
    optional = _readme_optional_settings()
    app_names_in_bicep = set(BICEP_SETTINGS) & set(SETTING_NAMES)
    assert set(SETTING_NAMES) - app_names_in_bicep - optional == set(), "neither deployed nor documented as optional"
    assert app_names_in_bicep & optional == set(), "both deployed and documented as left out"
    assert optional <= set(SETTING_NAMES), "the README lists a setting the app does not read"


def test_bicep_sets_only_known_settings_and_none_that_flex_refuses() -> None:
    """A misspelt name (ARCHIVE_QUEUE instead of ARCHIVE_QUEUE_NAME) would be read by nobody."""
    assert set(BICEP_SETTINGS) <= set(SETTING_NAMES) | HOST_SETTINGS
    assert set(BICEP_SETTINGS) & NOT_ON_FLEX == set()


def test_local_settings_sample_lists_every_setting_and_is_valid() -> None:
    """local.settings.sample.json holds every setting the app reads, with values Settings accepts."""
    assert set(SETTING_NAMES) <= set(SAMPLE)
    Settings.from_env(SAMPLE)


def test_emulator_settings_use_the_emulator_connection_string() -> None:
    """local.settings.emulator.json: the emulator's connection string, no identity-based connection, valid settings."""
    assert EMULATOR_SETTINGS["ServiceBusConnection"] == EMULATOR_CONNECTION
    assert not any(name.startswith("ServiceBusConnection__") for name in EMULATOR_SETTINGS)
    assert "OUTCOME_SERVICEBUS_NAMESPACE" not in EMULATOR_SETTINGS and "OUTCOME_FILE" not in EMULATOR_SETTINGS
    known = set(SETTING_NAMES) | HOST_SETTINGS | {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"}
    assert set(EMULATOR_SETTINGS) <= known
    settings = Settings.from_env(EMULATOR_SETTINGS)
    assert settings.has_outcome_destination and settings.arm_endpoint.startswith("http://127.0.0.1:")


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
    assert _unquote(MAIN.params()["archiveQueueName"] or "") == queue
    assert _unquote(MAIN.params()["outcomeTopicName"] or "") == topic
    assert APP_SETTINGS["ARCHIVE_QUEUE_NAME"] == "archiveQueueName" and APP_SETTINGS["OUTCOME_TOPIC_NAME"] == "outcomeTopicName"
    assert _emulator_queue()["Name"] == queue and _emulator_topic()["Name"] == topic
    assert BASE_SETTINGS["ARCHIVE_QUEUE_NAME"] == queue


def test_the_failed_outcomes_subscription_agrees_everywhere() -> None:
    """One subscription name and one SQL filter, outcome = 'failed', in Bicep, the emulator and the CLI's default."""
    name = _unquote(MAIN.params()["failedOutcomesSubscriptionName"] or "")
    assert name == DEFAULT_SUBSCRIPTION
    (emulated,) = [s for s in _emulator_topic()["Subscriptions"] if s["Name"] == name]
    (rule,) = emulated["Rules"]
    assert rule["Properties"]["FilterType"] == "Sql"
    assert rule["Properties"]["SqlFilter"]["SqlExpression"] == "outcome = 'failed'"
    assert properties(SERVICE_BUS.resource("failedOnly"))["parent"] == "failedOutcomes"
    assert properties(properties_block(SERVICE_BUS.resource("failedOnly"), "properties"))["filterType"] == "'SqlFilter'"
    assert "sqlExpression: 'outcome = \\'failed\\''" in SERVICE_BUS.resource("failedOnly")
    assert properties(SERVICE_BUS.resource("failedOutcomes"))["name"] == "failedOutcomesSubscriptionName"


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
    assert APP_SETTINGS["ServiceBusConnection__fullyQualifiedNamespace"] == "serviceBus.outputs.fullyQualifiedNamespace"
    assert APP_SETTINGS["ServiceBusConnection__credential"] == "'managedidentity'"
    for name in ("ServiceBusConnection__fullyQualifiedNamespace", "ServiceBusConnection__credential", "ServiceBusConnection__clientId"):
        assert name in SAMPLE


def test_the_user_assigned_identity_is_the_apps_client_id_everywhere() -> None:
    """AZURE_CLIENT_ID and ServiceBusConnection__clientId are the user-assigned identity's client id; the site runs as it."""
    assert APP_SETTINGS["AZURE_CLIENT_ID"] == APP_SETTINGS["ServiceBusConnection__clientId"] == "identity.outputs.clientId"
    assert APP_SETTINGS["AzureWebJobsStorage__clientId"] == "identity.outputs.clientId"
    assert MAIN.modules()["identity"] == "modules/identity.bicep"
    site = FUNCTION_APP.resource("site")
    assert "type: 'UserAssigned'" in site and "'${identityId}': {}" in site
    assert "userAssignedIdentityResourceId: identityId" in site


def test_max_delivery_count_is_one_number() -> None:
    """The queue's maxDeliveryCount and MAX_DELIVERY_COUNT come from one parameter, whose default is the sample's."""
    default = int(MAIN.params()["maxDeliveryCount"] or 0)
    assert default == int(SAMPLE["MAX_DELIVERY_COUNT"]) == Settings().max_delivery_count == int(EMULATOR_SETTINGS["MAX_DELIVERY_COUNT"])
    assert APP_SETTINGS["MAX_DELIVERY_COUNT"] == "string(maxDeliveryCount)"
    assert properties(MAIN.module("serviceBus"))["params"]  # the module call passes parameters
    assert re.search(r"^\s*maxDeliveryCount:\s*maxDeliveryCount\s*$", MAIN.module("serviceBus"), re.MULTILINE)
    assert properties(properties_block(SERVICE_BUS.resource("archiveQueue"), "properties"))["maxDeliveryCount"] == "maxDeliveryCount"
    assert _emulator_queue()["Properties"]["MaxDeliveryCount"] == default


def properties_block(body: str, name: str) -> str:
    """The inside of `name: {…}` within a resource body."""
    from tests.bicep_text import block_after

    return block_after(body, rf"^\s*{name}:\s*\{{")


# -- the Service Bus namespace and the roles --------------------------------------------------------


def test_service_bus_local_auth_is_off_and_both_entities_detect_duplicates() -> None:
    """disableLocalAuth on the namespace; duplicate detection on the queue and the topic (Bicep and emulator)."""
    assert properties(properties_block(SERVICE_BUS.resource("namespace"), "properties"))["disableLocalAuth"] == "true"
    for symbol in ("archiveQueue", "outcomeTopic"):
        assert properties(properties_block(SERVICE_BUS.resource(symbol), "properties"))["requiresDuplicateDetection"] == "true"
    assert _emulator_queue()["Properties"]["RequiresDuplicateDetection"] is True
    assert _emulator_topic()["Properties"]["RequiresDuplicateDetection"] is True
    assert SERVICE_BUS.resource_type("archiveQueue").startswith("Microsoft.ServiceBus/namespaces/queues@")
    assert SERVICE_BUS.resource_type("outcomeTopic").startswith("Microsoft.ServiceBus/namespaces/topics@")


@pytest.mark.parametrize(
    ("assignment", "scope", "role"),
    [
        ("appReceivesFromQueue", "archiveQueue", "dataReceiver"),
        ("appSendsToQueue", "archiveQueue", "dataSender"),
        ("appSendsToTopic", "outcomeTopic", "dataSender"),
    ],
    ids=["receiver-on-queue", "sender-on-queue-for-rescheduling", "sender-on-topic"],
)
def test_the_app_holds_its_data_roles_on_each_entity(assignment: str, scope: str, role: str) -> None:
    """Least privilege: each role on the entity that needs it, for the app's principal."""
    body = properties(SERVICE_BUS.resource(assignment))
    inner = properties(properties_block(SERVICE_BUS.resource(assignment), "properties"))
    assert body["scope"] == scope
    assert inner["roleDefinitionId"] == f"subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.{role})"
    assert inner["principalId"] == "appPrincipalId" and inner["principalType"] == "'ServicePrincipal'"
    roles = properties(SERVICE_BUS.var_block("roles"))
    assert _unquote(roles[role]) == ROLE_IDS[role]


def test_the_registry_role_grants_exactly_runs_read_and_write_on_the_registry() -> None:
    """A custom role with runs/read and runs/write, assignable in the registry's group, assigned on the registry."""
    definition = REGISTRY_ACCESS.resource("runsReadWrite")
    actions = re.findall(r"'(Microsoft\.ContainerRegistry/[^']+)'", definition)
    assert actions == ["Microsoft.ContainerRegistry/registries/runs/read", "Microsoft.ContainerRegistry/registries/runs/write"]
    assert "type: 'CustomRole'" in definition and "resourceGroup().id" in properties_block(definition, "properties")
    assignment = properties(REGISTRY_ACCESS.resource("appUpdatesRuns"))
    assert assignment["scope"] == "registry"
    assert REGISTRY_ACCESS.resource_type("registry").startswith("Microsoft.ContainerRegistry/registries@")
    call = properties(MAIN.module("registryAccess"))
    assert call["scope"] == "resourceGroup(registrySubscriptionId, registryResourceGroup)"
    assert "registryId" in MAIN.params() and MAIN.params()["registryId"] is None


# -- the function app -----------------------------------------------------------------------------


def test_the_function_app_is_python_3_11_on_flex_consumption() -> None:
    """FC1 / FlexConsumption plan, Linux function app, runtime python 3.11, identity-based deployment storage."""
    plan = FUNCTION_APP.resource("plan")
    assert "name: 'FC1'" in plan and "tier: 'FlexConsumption'" in plan
    site = FUNCTION_APP.resource("site")
    assert properties(site)["kind"] == "'functionapp,linux'"
    runtime = properties(properties_block(site, "runtime"))
    assert runtime == {"name": "'python'", "version": "'3.11'"}
    storage = properties(properties_block(site, "storage"))
    assert storage["type"] == "'blobContainer'"
    assert "type: 'UserAssignedIdentity'" in properties_block(site, "authentication")
    assert "properties: union(appSettings, secretAppSettings)" in site
    assert re.search(r"@secure\(\)\s*(?:@description\([^)]*\)\s*)?param secretAppSettings object", FUNCTION_APP.text)


def test_application_insights_and_storage_are_deployed_without_keys() -> None:
    """Storage shared keys and Application Insights local auth are off; the host uses the identity."""
    storage = Bicep(INFRA / "modules" / "storage.bicep")
    assert properties(properties_block(storage.resource("storage"), "properties"))["allowSharedKeyAccess"] == "false"
    monitoring = Bicep(INFRA / "modules" / "monitoring.bicep")
    assert properties(properties_block(monitoring.resource("applicationInsights"), "properties"))["DisableLocalAuth"] == "true"
    assert APP_SETTINGS["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert "Authorization=AAD" in APP_SETTINGS["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


# -- the modules are wired consistently (what `bicep build` would catch first) ----------------------


@pytest.mark.parametrize("module", sorted(MAIN.modules()), ids=sorted(MAIN.modules()))
def test_each_module_call_passes_its_parameters_and_uses_its_outputs(module: str) -> None:
    """Every parameter passed is declared, every required one is passed, every output used exists."""
    target = Bicep(INFRA / MAIN.modules()[module])
    declared = target.params()
    passed = set(properties(properties_block(MAIN.module(module), "params")))
    assert passed <= set(declared), f"{module}: unknown parameters {passed - set(declared)}"
    required = {name for name, default in declared.items() if default is None}
    assert required <= passed, f"{module}: missing parameters {required - passed}"
    used = set(re.findall(rf"\b{module}\.outputs\.(\w+)", MAIN.text))
    assert used <= target.outputs(), f"{module}: unknown outputs {used - target.outputs()}"


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.name)
def test_every_scope_and_parent_names_a_declared_resource(path: Path) -> None:
    """`scope: x` and `parent: x` refer to resources of the same file (or, in main.bicep, the resource group)."""
    bicep = Bicep(path)
    symbols = set(bicep.resources())
    for reference in re.findall(r"^\s*(?:scope|parent):\s*(\w+)\s*$", bicep.text, re.MULTILINE):
        assert reference in symbols, f"{path.name}: {reference} is not a resource of this file"


def test_the_parameters_file_sets_declared_parameters_and_every_required_one() -> None:
    """infra/main.parameters.json (azd) names only parameters of main.bicep, and all that have no default."""
    given = set(_json(INFRA / "main.parameters.json")["parameters"])
    declared = MAIN.params()
    assert given <= set(declared)
    assert {name for name, default in declared.items() if default is None} <= given


# -- azd, docker compose, .funcignore, CI -------------------------------------------------------------


def test_azure_yaml_deploys_this_folder_to_the_tagged_function_app() -> None:
    """azd: one python function service whose name is the site's azd-service-name tag; infra is infra/main.bicep."""
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (name, service), = azure["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert f"'azd-service-name': '{name}'" in FUNCTION_APP.resource("site")
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert "targetScope = 'subscription'" in MAIN.text


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


def _workflow(name: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_ci_runs_make_test_on_push_and_pull_request() -> None:
    """ci.yml: push and pull_request trigger a job whose step runs `make test`."""
    ci = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    assert any("make test" in str(step.get("run", "")) for step in _steps(ci))
    assert any(str(step.get("uses", "")).startswith("actions/setup-python") and step["with"]["python-version"] == "3.11" for step in _steps(ci))


def test_deploy_logs_in_with_oidc_and_publishes_the_app() -> None:
    """deploy.yml: id-token permission, azure/login with client, tenant and subscription ids (no secret), then a deploy."""
    deploy = _workflow("deploy.yml")
    (job,) = [job for job in deploy["jobs"].values() if any(str(s.get("uses", "")).startswith("azure/login@") for s in job["steps"])]
    assert {**(deploy.get("permissions") or {}), **(job.get("permissions") or {})}["id-token"] == "write"
    steps = job["steps"]
    (login,) = [step for step in steps if str(step.get("uses", "")).startswith("azure/login@")]
    assert set(login["with"]) >= {"client-id", "tenant-id", "subscription-id"} and "creds" not in login["with"]
    publishes = [
        step for step in steps
        if str(step.get("uses", "")).lower().startswith("azure/functions-action@") or "func azure functionapp publish" in str(step.get("run", ""))
    ]
    assert publishes, "no Azure/functions-action or func azure functionapp publish step"
    assert steps.index(login) < steps.index(publishes[0])


def test_readme_walks_through_deploying_and_operating() -> None:
    """The README's commands exist: azd up, az deployment + func publish, sending, watching, replaying, live tests."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# ACR Run Archiver\n\n```sh\nmake demo ")
    for command in (
        "azd up", "azd env set ACR_REGISTRY_ID", "az deployment sub create", "func azure functionapp publish",
        "acr-archiver send", "acr-archiver outcomes", "acr-archiver dead-letters resubmit", "acr-archiver archive",
        "docker compose up", "func start", "pytest -m live", EMULATOR_CONNECTION,
    ):
        assert command in readme, command
