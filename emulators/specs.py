"""Access to the official Runs examples and swagger (verbatim copies bundled in `emulators/examples/`)."""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "EXAMPLE_NAMES",
    "SWAGGER_FILE",
    "bundled_dir",
    "example_run",
    "shared_specs_dir",
    "spec_file",
    "swagger",
]

EXAMPLE_NAMES = ("RunsUpdate", "RunsGet", "RunsGet_WithTimerTrigger")
SWAGGER_FILE = "containerregistry_build.2019-04-01.json"


def bundled_dir() -> Path:
    """Folder of the verbatim copies shipped with the emulators."""
    return Path(__file__).resolve().parent / "examples"


def shared_specs_dir() -> Path | None:
    """The project's `shared/specs` beside the repository, when this checkout has it."""
    candidate = Path(__file__).resolve().parents[2] / "shared" / "specs"
    return candidate if candidate.is_dir() else None


def spec_file(name: str) -> Path:
    """Path of a spec file: under `ACR_SPECS_DIR` if set (examples in its `examples/`), else bundled."""
    override = os.environ.get("ACR_SPECS_DIR")
    if not override:
        return bundled_dir() / name
    folder = Path(override)
    return folder / name if name == SWAGGER_FILE else folder / "examples" / name


def _canonical_name(example: str) -> str:
    """Map an example name (case-insensitive, `.json` optional) to its canonical spelling."""
    stem = example[:-5] if example.lower().endswith(".json") else example
    for name in EXAMPLE_NAMES:
        if name.lower() == stem.lower():
            return name
    raise ValueError(f"unknown example {example!r}; expected one of {', '.join(EXAMPLE_NAMES)}")


@lru_cache(maxsize=None)
def _load(path: str) -> Any:
    """Parse a JSON file once."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def example_run(example: str = "RunsUpdate") -> dict[str, Any]:
    """A fresh copy of the Run body of an example's 200 response."""
    document = _load(str(spec_file(_canonical_name(example) + ".json")))
    return copy.deepcopy(document["responses"]["200"]["body"])


def swagger() -> dict[str, Any]:
    """A fresh copy of the Container Registry build swagger (2019-04-01)."""
    return copy.deepcopy(_load(str(spec_file(SWAGGER_FILE))))
