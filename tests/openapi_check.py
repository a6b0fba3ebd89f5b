"""Check HTTP responses against openapi.yaml: the status is documented, the body and headers match it.

    assert_matches_openapi("/api/archive-events", "POST", 200, body, headers)
    assert_response_matches_openapi("archive-events", "POST", response)   # an azure.functions.HttpResponse

Routes may be given with or without the `/api` prefix, as a template or a concrete path. A status is
looked up exactly, then as its class (`4XX`), then `default`. Bodies are validated with jsonschema
(Draft 2020-12, the dialect of OpenAPI 3.1 schemas), formats included.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["SPEC_PATH", "assert_matches_openapi", "assert_response_matches_openapi", "operation", "response_spec", "spec"]

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
_BASE_URI = "urn:acr-run-archiver:openapi"


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """openapi.yaml, parsed."""
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _registry() -> Registry:
    return Registry().with_resource(_BASE_URI, Resource.from_contents(spec(), default_specification=DRAFT202012))


def _resolve(node: Any) -> Any:
    """Follow a local `$ref` (responses, headers, parameters) to what it names."""
    while isinstance(node, Mapping) and "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), f"only local references are used: {pointer}"
        node = spec()
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts) + "$")


def operation(route: str, method: str) -> tuple[str, dict[str, Any]]:
    """The path template matching `route` and its operation for `method`; fails when either is not documented."""
    path = "/" + route.split("?")[0].strip("/")
    if path.startswith("/api/"):
        path = path[len("/api") :]
    for template, item in spec()["paths"].items():
        if template == path or _template_pattern(template).match(path):
            op = item.get(method.lower())
            assert op is not None, f"openapi.yaml documents no {method.upper()} {template}"
            return template, op
    raise AssertionError(f"openapi.yaml documents no path matching {path}")


def response_spec(route: str, method: str, status: int) -> tuple[str, dict[str, Any]]:
    """The documented response of a status: exact, then its class (4XX), then default."""
    template, op = operation(route, method)
    responses = op["responses"]
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            return key, _resolve(responses[key])
    raise AssertionError(f"{method.upper()} {template} does not document status {status} (documented: {sorted(responses)})")


def assert_matches_openapi(route: str, method: str, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
    """Fail unless the status is documented for the operation and `body` (and `headers`, if given) match it.

    `body` may be the decoded JSON, or the raw bytes/str of the response (b"" or None: no body).
    """
    key, response = response_spec(route, method, status)
    where = f"{method.upper()} {route} → {status} (documented as {key})"
    content = response.get("content") or {}
    if body in (None, b"", ""):
        assert not content, f"{where}: the response has no body, but openapi.yaml documents {sorted(content)}"
    else:
        assert "application/json" in content, f"{where}: a body came back, but openapi.yaml documents no application/json content"
        decoded = json.loads(body) if isinstance(body, (bytes, str)) else body
        _validate(content["application/json"]["schema"], decoded, where)
    if headers is not None:
        present = {name.lower(): value for name, value in headers.items()}
        for name, header in (response.get("headers") or {}).items():
            header = _resolve(header)
            if header.get("required"):
                assert name.lower() in present, f"{where}: required header {name} is missing"
            if name.lower() in present and "schema" in header:
                _validate(header["schema"], present[name.lower()], f"{where}: header {name}")


def assert_response_matches_openapi(route: str, method: str, response: Any) -> None:
    """assert_matches_openapi for an azure.functions.HttpResponse."""
    assert_matches_openapi(route, method, response.status_code, response.get_body(), dict(response.headers))


def _validate(schema: Mapping[str, Any], instance: Any, where: str) -> None:
    # The schema is validated in place, so its local $refs resolve against the whole document.
    wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": _BASE_URI + "/check", "$ref": _pointer_to(schema)}
    validator = jsonschema.Draft202012Validator(wrapper, registry=_registry(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = list(validator.iter_errors(instance))
    if errors:
        best = jsonschema.exceptions.best_match(errors)  # descends into oneOf/anyOf where one branch is likeliest
        reasons = sorted({f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in best.context or []})[:6]
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise AssertionError(f"{where}: /{'/'.join(map(str, best.absolute_path))}: {best.message}{detail}")


def _pointer_to(schema: Mapping[str, Any]) -> str:
    """The URI of a schema object inside the document (found by identity), so relative $refs resolve."""
    found = _find(spec(), schema, "")
    assert found is not None, "schema is not part of openapi.yaml"
    return f"{_BASE_URI}#{found}"


def _find(node: Any, target: Any, pointer: str) -> str | None:
    if node is target:
        return pointer
    if isinstance(node, Mapping):
        children = ((str(k), v) for k, v in node.items())
    elif isinstance(node, list):
        children = ((str(i), v) for i, v in enumerate(node))
    else:
        return None
    for key, child in children:
        found = _find(child, target, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
        if found is not None:
            return found
    return None
