"""Managed-identity tokens (contract §3, §7): fetched once per process, refreshed before expiry, never logged."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, Fault, IdentityEmulator
from shared.auth import ManagedIdentityTokens
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, read_outcomes

EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}


def _message(event: dict[str, Any]) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=json.dumps(event).encode(), message_id=str(uuid.uuid4()), delivery_count=1, application_properties={}, user_properties={}
    )


def test_the_token_is_fetched_once_for_many_events(functions: dict[str, Any], identity: IdentityEmulator, arm: ArmEmulator) -> None:
    """Twenty events, one call to the identity endpoint."""
    for n in range(20):
        functions["archive_queue"](_message({**EVENT, "isArchiveEnabled": n % 2 == 0}))
    assert arm.stats()["patches"] == 20
    assert identity.calls == 1


def test_a_user_assigned_identity_is_asked_for_by_client_id(functions: dict[str, Any], identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """AZURE_CLIENT_ID selects the user-assigned identity."""
    client_id = "11111111-2222-3333-4444-555555555555"
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    functions["archive_queue"](_message(EVENT))
    assert identity.calls_by_client_id == {client_id: 1}


class _CountingCredential:
    """A TokenCredential handing out numbered tokens that expire `lifetime` seconds from `now`."""

    def __init__(self, lifetime: float, clock: Any) -> None:
        self.lifetime, self.clock, self.calls, self.claims = lifetime, clock, 0, []

    def get_token(self, *scopes: str, claims: str | None = None, **_: Any) -> AccessToken:
        self.calls += 1
        self.claims.append(claims)
        return AccessToken(f"token-{self.calls}", int(self.clock() + self.lifetime))


def test_the_token_is_refreshed_before_it_expires() -> None:
    """A cached token is reused until half its lifetime or five minutes before expiry, whichever is first."""
    now = [0.0]
    credential = _CountingCredential(3600, lambda: now[0])
    tokens = ManagedIdentityTokens(credential, "scope", clock=lambda: now[0])
    assert tokens.token() == tokens.token() == "token-1"
    now[0] = 1799
    assert tokens.token() == "token-1"
    now[0] = 1801
    assert tokens.token() == "token-2"
    credential.lifetime = 400
    now[0] = 10_000
    assert tokens.token() == "token-3"
    now[0] = 10_099
    assert tokens.token() == "token-3"
    now[0] = 10_101
    assert tokens.token() == "token-4"


def test_a_refused_token_is_replaced_once_even_when_many_threads_report_it() -> None:
    """refresh() of a token already replaced returns the new one without another fetch."""
    credential = _CountingCredential(3600, lambda: 0.0)
    tokens = ManagedIdentityTokens(credential, "scope", clock=lambda: 0.0)
    stale = tokens.token()
    assert tokens.refresh(stale) == "token-2"
    assert tokens.refresh(stale) == "token-2"
    assert credential.calls == 2 and credential.claims[1]  # the refresh bypasses MSAL's cache


def test_no_token_reaches_a_log_record(functions: dict[str, Any], identity: IdentityEmulator, arm: ArmEmulator, outcome_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, across success, 401 refresh, retries and failures, no issued token appears in logs or outcomes."""
    caplog.set_level(logging.DEBUG)
    queue = functions["archive_queue"]
    queue(_message(EVENT))
    identity.revoke_all()
    queue(_message(EVENT))
    arm.script(SEED_RUN, Fault.status(429, retry_after="0"), Fault.status(404))
    queue(_message(EVENT))
    assert identity.calls == 2 and len(identity.issued) == 2
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    outcomes = json.dumps(read_outcomes(outcome_file))
    assert len(caplog.records) > 5
    for token in identity.issued:
        assert token not in logged
        assert token not in outcomes
    assert identity.header_secret not in logged


class _FlakyCredential(_CountingCredential):
    """Fails while `down` is set, as an identity endpoint answering 500 would."""

    down = False

    def get_token(self, *scopes: str, claims: str | None = None, **kwargs: Any) -> AccessToken:
        if self.down:
            from azure.core.exceptions import ClientAuthenticationError

            raise ClientAuthenticationError("identity endpoint answered 500")
        return super().get_token(*scopes, claims=claims, **kwargs)


def test_a_failed_early_refresh_keeps_the_still_valid_token() -> None:
    """An identity blip at refresh time does not fail events while the current token is valid."""
    from shared.errors import TokenUnavailable

    now = [0.0]
    credential = _FlakyCredential(3600, lambda: now[0])
    tokens = ManagedIdentityTokens(credential, "scope", clock=lambda: now[0])
    assert tokens.token() == "token-1"
    credential.down = True
    now[0] = 1801
    assert tokens.token() == "token-1"
    assert tokens.token() == "token-1"
    assert credential.calls == 1
    now[0] = 1832
    credential.down = False
    assert tokens.token() == "token-2"
    credential.down = True
    now[0] = 1832 + 3600 - 30
    with pytest.raises(TokenUnavailable):
        tokens.token()


def test_credential_options_reach_azure_identity(identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """for_settings passes pipeline options through: retry_total=0 makes one identity request, not four."""
    from shared.errors import TokenUnavailable

    for name, value in identity.environ().items():
        monkeypatch.setenv(name, value)
    identity.fail_next(10, status=500)
    with pytest.raises(TokenUnavailable):
        ManagedIdentityTokens.for_settings(None, "https://management.azure.com/.default", retry_total=0).token()
    assert identity.calls == 1
