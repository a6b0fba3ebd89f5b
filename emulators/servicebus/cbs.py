"""Claims-based security: which entities a connection's put-token requests grant.

A SAS token (`type` `servicebus.windows.net:sastoken`) is verified as Service Bus does: the key name must be
the emulator's, `se` in the future, and `sig` the HMAC-SHA256 of `quote_plus(sr) + "\\n" + se` under the key.
Any token of the SAS form is verified so, whatever its declared type (azure-servicebus 7.x puts SAS tokens
with type `jwt`). Another bearer token (`type` `jwt`) is accepted when non-empty (no issuer to verify against
locally). Either grants
the path of the put-token `name` (the audience), which covers that entity and everything below it.
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-sas,
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide#claims-based-authorization)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, quote_plus

from emulators.servicebus.store import entity_path

__all__ = ["DEFAULT_KEY", "DEFAULT_KEY_NAME", "CbsRefused", "Keys", "authorize", "covers"]

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"
SAS_TYPE = "servicebus.windows.net:sastoken"
JWT_TYPE = "jwt"


class CbsRefused(Exception):
    """A put-token the emulator does not accept; the text becomes the status description (never the token)."""


@dataclass(frozen=True)
class Keys:
    """The shared access policy the emulator accepts."""

    name: str = DEFAULT_KEY_NAME
    key: str = DEFAULT_KEY


def _verify_sas(token: str, keys: Keys, now: float) -> str:
    """Return the signed resource path of a valid SAS token."""
    if not token.startswith("SharedAccessSignature "):
        raise CbsRefused("A SAS token starts with 'SharedAccessSignature '.")
    fields = {k: v[0] for k, v in parse_qs(token[len("SharedAccessSignature "):], keep_blank_values=True).items()}
    resource, signature, expiry, key_name = (fields.get(k, "") for k in ("sr", "sig", "se", "skn"))
    if key_name != keys.name:
        raise CbsRefused("The SAS key name is not the emulator's.")
    if not expiry.isdigit() or int(expiry) <= now:
        raise CbsRefused("The SAS token has expired or has no expiry.")
    expected = base64.b64encode(
        hmac.new(keys.key.encode(), f"{quote_plus(resource)}\n{expiry}".encode(), hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(expected, signature):
        raise CbsRefused("The SAS signature does not match the key.")
    return entity_path(resource)


def covers(granted: str, path: str) -> bool:
    """Whether a token for `granted` (an entity path, "" for the namespace) covers `path`."""
    granted, path = granted.lower().strip("/"), path.lower().strip("/")
    return granted == "" or path == granted or path.startswith(granted + "/")


def authorize(token: object, token_type: object, audience: object, keys: Keys, now: float | None = None) -> str:
    """Check one put-token; return the entity path it grants or raise CbsRefused."""
    if not isinstance(audience, str) or not audience:
        raise CbsRefused("put-token needs a name (the audience).")
    if not isinstance(token, str) or not token:
        raise CbsRefused("put-token needs a non-empty token.")
    granted = entity_path(audience)
    # The Python client puts SAS tokens with type `jwt` too, so the token's own form decides how it is checked.
    if token_type == SAS_TYPE or token.startswith("SharedAccessSignature "):
        signed = _verify_sas(token, keys, time.time() if now is None else now)
        if not covers(signed, granted):
            raise CbsRefused("The SAS token was signed for another resource.")
        return granted
    if token_type == JWT_TYPE:
        return granted
    raise CbsRefused(f"Token type {token_type!r} is not supported (sastoken or jwt).")
