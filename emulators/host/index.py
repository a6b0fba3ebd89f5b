"""Loading and indexing the app as the Python worker does: import the script, `get_functions()` once, read raw bindings."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func

__all__ = ["BindingError", "IndexedFunction", "index_app", "load_app", "resolve_setting_references"]

_REFERENCE = re.compile(r"%([^%]+)%")


class BindingError(ValueError):
    """A binding the stand-in cannot serve (an unresolved %setting%, a missing connection)."""


def resolve_setting_references(value: str, env: Mapping[str, str]) -> str:
    """Replace each `%NAME%` by app setting NAME, as the host resolves binding expressions; a missing one is an error."""
    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise BindingError(f"binding expression %{name}% names an app setting that is not set")
        return env[name]

    return _REFERENCE.sub(setting, value)


@dataclass(frozen=True)
class IndexedFunction:
    """One function of the index: its name, trigger binding (raw JSON, as the host reads it) and user code."""

    name: str
    trigger: dict[str, Any]
    bindings: tuple[dict[str, Any], ...]
    call: Callable[..., Any]

    @property
    def trigger_type(self) -> str:
        """The trigger's binding type, e.g. `serviceBusTrigger`, `httpTrigger`, `timerTrigger`."""
        return str(self.trigger["type"])


def index_app(app: func.FunctionApp) -> list[IndexedFunction]:
    """Index the app's functions once, from their raw binding JSON (what the worker sends the host)."""
    functions = []
    for function in app.get_functions():
        bindings = tuple(json.loads(raw) for raw in function.get_raw_bindings())
        triggers = [b for b in bindings if b.get("direction") == "IN" and str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            raise BindingError(f"function {function.get_function_name()!r} has {len(triggers)} triggers, not 1")
        functions.append(IndexedFunction(function.get_function_name(), triggers[0], bindings, function.get_user_function()))
    return functions


def load_app(module: str = "function_app", attribute: str = "app") -> func.FunctionApp:
    """Import the script as the worker does; the app settings must already be in os.environ."""
    return getattr(importlib.import_module(module), attribute)
