"""Module dependencies point inward (STYLE §2, issue 9): the domain never imports the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(module: str) -> set[str]:
    """The `shared.*` modules a module imports, by its own source."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("shared")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("shared.outcome", {"shared.arm", "shared.publisher", "shared.service", "shared.webhook", "shared.runtime"}),
        ("shared.events", {"shared.arm", "shared.publisher", "shared.service", "shared.webhook", "shared.runtime"}),
        ("shared.messaging", {"shared.arm", "shared.publisher", "shared.service", "shared.webhook", "shared.runtime", "shared.events"}),
        ("shared.jsontext", {"shared.arm", "shared.publisher", "shared.service", "shared.webhook", "shared.runtime", "shared.events"}),
        ("shared.reschedule", {"shared.service", "shared.webhook", "shared.runtime"}),
    ],
    ids=["outcome", "events", "messaging", "jsontext", "reschedule"],
)
def test_a_module_does_not_reach_outward(module: str, forbidden: set[str]) -> None:
    """outcome and events never import arm; reschedule never imports service; the message rules stand alone."""
    reached = {name for name in imported_modules(module) if any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert not reached, f"{module} imports {sorted(reached)}"
