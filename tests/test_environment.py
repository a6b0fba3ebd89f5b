"""What requests would read from the environment (proxies, ~/.netrc) for an ARM request (contract §3).

The ARM Session does not re-read the environment on every request (docs/performance.md); the proxy
variables are resolved once per ArmClient, by requests itself (the host restarts the worker when
app settings change). ~/.netrc is not consulted, so it can never replace the bearer token.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, IdentityEmulator
from shared.arm import ArmClient, new_session
from shared.auth import ManagedIdentityTokens
from shared.errors import ArmUnavailable
from shared.events import ArchiveRequest
from shared.settings import Settings
from tests import support
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, read_outcomes
from tests.support import closed_port_url

REQUEST = ArchiveRequest(SUB, GROUP, REGISTRY, SEED_RUN, True)
ENVIRONMENT_NAMES = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)
"""What requests reads from the environment for a request (besides ~/.netrc)."""
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without any of the variables requests reads."""
    for name in ENVIRONMENT_NAMES:
        monkeypatch.delenv(name, raising=False)


def _client(endpoint: str, monkeypatch: pytest.MonkeyPatch, identity: IdentityEmulator, **proxy: str) -> ArmClient:
    """An ArmClient built once `proxy` is in the environment (the token was fetched before, directly)."""
    for name, value in identity.environ().items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env({"ARM_ENDPOINT": endpoint, "ARM_MAX_ATTEMPTS": "1"})
    tokens = ManagedIdentityTokens.for_settings(None, settings.arm_scope)
    tokens.token()  # azure-identity honours the proxy variables too; the identity endpoint is no proxy
    for name, value in proxy.items():
        monkeypatch.setenv(name, value)
    return ArmClient(new_session(), tokens, settings)


def test_an_http_proxy_from_the_environment_carries_the_patch(
    arm: ArmEmulator, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured: the emulator, acting as the proxy, answers for an endpoint nothing listens on."""
    result = _client(closed_port_url(), monkeypatch, identity, HTTP_PROXY=arm.url).update_run(REQUEST)
    assert result.http_status == 200 and arm.stats()["patches"] == 1


def test_no_proxy_sends_the_patch_directly(arm: ArmEmulator, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_PROXY naming the ARM host bypasses a proxy that would refuse the connection."""
    client = _client(arm.url, monkeypatch, identity, HTTP_PROXY=closed_port_url(), NO_PROXY="127.0.0.1")
    assert client.update_run(REQUEST).http_status == 200


def test_netrc_credentials_never_replace_the_bearer_token(
    arm: ArmEmulator, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ~/.netrc entry for the ARM host is ignored: the PATCH still carries the managed-identity token."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert _client(arm.url, monkeypatch, identity).update_run(REQUEST).http_status == 200
    (patch,) = [entry for entry in arm.requests_log if entry["method"] == "PATCH"]
    assert {k.lower(): v for k, v in patch["headers"].items()}["authorization"] == "Bearer ***"


def test_the_proxy_environment_of_the_process_applies_to_its_app(
    functions: dict[str, Any], arm: ArmEmulator, outcome_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set when the worker starts routes ARM calls through it; an app started without it goes direct."""
    monkeypatch.setenv("MAX_DELIVERY_COUNT", "3")
    monkeypatch.setenv("ARM_MAX_ATTEMPTS", "1")

    def deliver(queue: Any) -> None:
        queue(ServiceBusMessage(body=json.dumps(EVENT).encode(), message_id=str(uuid.uuid4()), delivery_count=1,
                                application_properties={}, user_properties={}))

    # the identity endpoint is reached as localhost, which NO_PROXY exempts; ARM (127.0.0.1) is not exempt
    monkeypatch.setenv("IDENTITY_ENDPOINT", os.environ["IDENTITY_ENDPOINT"].replace("127.0.0.1", "localhost"))
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("HTTP_PROXY", closed_port_url())
    with pytest.raises(ArmUnavailable):
        deliver(support.functions()["archive_queue"])
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    deliver(functions["archive_queue"])
    assert [record["body"]["outcome"] for record in read_outcomes(outcome_file)] == ["succeeded"]
    assert arm.stats()["patches"] == 1
