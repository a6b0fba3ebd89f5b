"""Service Bus connections named by a binding's `connection`, resolved from app settings as the host does.

`<name>` holding a connection string wins; otherwise `<name>__fullyQualifiedNamespace` is the identity form, with
`<name>__credential` (`managedidentity`) and `<name>__clientId` choosing the credential.
(https://learn.microsoft.com/azure/azure-functions/functions-reference#common-properties-for-identity-based-connections)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.servicebus import ServiceBusClient

from emulators.host.index import BindingError

__all__ = ["open_servicebus"]


def _credential(env: Mapping[str, str], name: str) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = env.get(f"{name}__clientId")
    if env.get(f"{name}__credential", "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def open_servicebus(env: Mapping[str, str], name: str) -> ServiceBusClient:
    """A client for connection `name`; BindingError naming the settings when neither form is set."""
    connection_string = env.get(name)
    if connection_string:
        return ServiceBusClient.from_connection_string(connection_string)
    namespace = env.get(f"{name}__fullyQualifiedNamespace")
    if namespace:
        return ServiceBusClient(namespace, credential=_credential(env, name))
    raise BindingError(f"connection {name!r}: set {name} (a connection string) or {name}__fullyQualifiedNamespace")
