"""Local emulators for tests and benchmarks: ARM Runs Get/Update/List and the managed identity endpoint.

- `ArmEmulator` (emulators.arm): loopback ARM serving Runs - Get / Update / List, api-version
  2019-04-01, with scripted `Fault`s, long-running updates, seeded registries, ARM throttling and a control API.
- `IdentityEmulator` (emulators.identity): the App Service managed identity token endpoint.

Names are imported lazily so that `python -m emulators.arm` does not import its own module twice.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulators.arm import ArmEmulator
    from emulators.faults import Fault
    from emulators.identity import IdentityEmulator

__all__ = ["ArmEmulator", "Fault", "IdentityEmulator"]

_HOMES = {"ArmEmulator": "emulators.arm", "Fault": "emulators.faults", "IdentityEmulator": "emulators.identity"}


def __getattr__(name: str) -> Any:
    """Import the re-exported names on first use."""
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'emulators' has no attribute {name!r}")
