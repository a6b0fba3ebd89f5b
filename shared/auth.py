"""ARM tokens from managed identity, cached in-process and refreshed before they expire (contract §3)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared.errors import TokenUnavailable

__all__ = ["ManagedIdentityTokens", "TokenCredential", "TokenProvider"]

log = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 300
"""Refresh at least this long before expiry, as azure-core's BearerTokenCredentialPolicy does; and at
half the lifetime at the latest, as MSAL's refresh_in does, so a token is never used near its end."""

STILL_USABLE_SECONDS = 60
"""A token this close to expiry is not used when its refresh failed."""
REFRESH_RETRY_SECONDS = 30
"""After a failed early refresh, the current token is kept and the refresh retried this much later."""

# Any claims challenge makes MSAL skip its cache and ask the identity endpoint for a new token
# (msal.managed_identity: "Upon receiving a claims_challenge, MSAL will attempt to acquire a new token").
_FORCE_REFRESH_CLAIMS = '{"access_token":{"nbf":{"essential":true}}}'


class TokenCredential(Protocol):
    """The part of azure.core.credentials.TokenCredential this module uses."""

    def get_token(self, *scopes: str, claims: str | None = None, **kwargs: Any) -> Any: ...


class TokenProvider(Protocol):
    """What the ARM client needs: a bearer token, and a way to replace one ARM refused."""

    def token(self) -> str: ...

    def refresh(self, rejected: str) -> str: ...


class ManagedIdentityTokens:
    """Bearer tokens for one scope, fetched once and shared by every invocation of the process."""

    def __init__(self, credential: TokenCredential, scope: str, *, clock: Any = time.time) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0

    @classmethod
    def for_settings(cls, client_id: str | None, scope: str, **credential_options: Any) -> ManagedIdentityTokens:
        """A provider over azure-identity's ManagedIdentityCredential (user-assigned when client_id is set).

        `credential_options` go to the credential's pipeline as azure-core takes them, e.g.
        `retry_backoff_factor=0` for tests that must not sit through the identity endpoint's backoff.
        """
        from azure.identity import ManagedIdentityCredential

        if client_id:
            credential_options["client_id"] = client_id
        return cls(ManagedIdentityCredential(**credential_options), scope)

    def token(self) -> str:
        """The cached token, fetched again only once it reached its refresh time."""
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                try:
                    self._fetch(claims=None)
                except TokenUnavailable:
                    if self._token is None or self._expires_at - self._clock() < STILL_USABLE_SECONDS:
                        raise
                    # An early refresh failed but the token still works: keep using it, try again soon,
                    # rather than failing every event through one identity-endpoint blip.
                    self._refresh_at = self._clock() + REFRESH_RETRY_SECONDS
                    log.warning("keeping the current token, valid %d s more; refreshing again in %d s",
                                self._expires_at - self._clock(), REFRESH_RETRY_SECONDS)
            return self._token  # type: ignore[return-value]

    def refresh(self, rejected: str) -> str:
        """Replace a token ARM answered 401 to, unless another invocation already did."""
        with self._lock:
            if self._token == rejected or self._token is None:
                self._fetch(claims=_FORCE_REFRESH_CLAIMS)
            return self._token  # type: ignore[return-value]

    def _fetch(self, claims: str | None) -> None:
        try:
            access = self._credential.get_token(self._scope, claims=claims) if claims else self._credential.get_token(self._scope)
        except AzureError as error:  # ClientAuthenticationError, CredentialUnavailableError, transport errors
            log.warning("managed identity gave no token for %s: %s", self._scope, type(error).__name__)
            raise TokenUnavailable(f"managed identity gave no token for {self._scope}: {_first_line(error)}") from None
        self._token = access.token
        self._expires_at = float(access.expires_on)
        lifetime = access.expires_on - self._clock()
        self._refresh_at = self._clock() + max(min(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2), 0)
        log.info("managed identity token acquired for %s, valid %d s", self._scope, lifetime)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
