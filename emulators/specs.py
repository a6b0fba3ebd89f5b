"""Access to the official Runs examples and swagger (verbatim copies bundled in `emulators/examples/`)."""

from __future__ import annotations

import copy
import json
import os
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "EXAMPLE_NAMES",
    "LIST_EXAMPLE",
    "SWAGGER_FILE",
    "bundled_dir",
    "example_list",
    "example_run",
    "schema_errors",
    "shared_specs_dir",
    "spec_file",
    "swagger",
]

EXAMPLE_NAMES = ("RunsUpdate", "RunsGet", "RunsGet_WithTimerTrigger")
LIST_EXAMPLE = "RunsList"
SWAGGER_FILE = "containerregistry_build.2019-04-01.json"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


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


def example_list() -> dict[str, Any]:
    """A fresh copy of the RunListResult body of the Runs_List example's 200 response."""
    document = _load(str(spec_file(LIST_EXAMPLE + ".json")))
    return copy.deepcopy(document["responses"]["200"]["body"])


def _strict_definitions(definitions: dict[str, Any]) -> dict[str, Any]:
    """Swagger definitions with inherited (allOf) properties merged and unknown properties refused."""
    strict = copy.deepcopy(definitions)
    for schema in strict.values():
        inherited: dict[str, Any] = {}
        for part in schema.pop("allOf", []):
            inherited.update(definitions[part["$ref"].rsplit("/", 1)[-1]].get("properties", {}))
        if inherited or "properties" in schema:
            schema["properties"] = {**inherited, **schema.get("properties", {})}
            schema["additionalProperties"] = False
    return strict


def _is_date_time(value: object) -> bool:
    """RFC 3339 `date-time` (jsonschema's own check needs an optional package)."""
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError(f"not RFC 3339: {value!r}")
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@lru_cache(maxsize=None)
def _validator(definition: str) -> Any:
    """A strict Draft 4 validator of one swagger definition (jsonschema is a test dependency, imported here)."""
    from jsonschema import Draft4Validator, FormatChecker  # only tests and tools validate: a dev dependency

    checker = FormatChecker(formats=())
    checker.checks("date-time", raises=ValueError)(_is_date_time)
    schema = {"$ref": f"#/definitions/{definition}", "definitions": _strict_definitions(swagger()["definitions"])}
    return Draft4Validator(schema, format_checker=checker)


def schema_errors(definition: str, body: Any) -> list[str]:
    """Where `body` breaks the swagger's `definition` (e.g. "Run", "RunListResult"), strictly: no unknown keys."""
    return [f"{list(error.path)}: {error.message}" for error in _validator(definition).iter_errors(body)]
