"""Property-based tests (hypothesis) of the event parser and the entry points (contract §2, §3, §6, §7).

- Whatever arrives (bytes, JSON, route values), nothing raises out of a function: on the queue it is an
  outcome, rejected unless it is a valid event; over HTTP a 4xx unless it is valid.
- Nothing invalid gets through: every request that reaches ARM satisfies the contract's rules, checked
  here by an oracle written from the contract's text, not from the parser.
- Every valid event, in any shape, is accepted; its URL lies under ARM_ENDPOINT with exactly the
  contract's path shape, and each path segment percent-decodes back to the event's value, on the
  emulator's side of the wire too.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from azure.functions.servicebus import ServiceBusMessage
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from emulators import ArmEmulator
from shared.arm import ArmClient
from shared.errors import InvalidEvent
from shared.events import ArchiveRequest, decode_json, parse_event
from shared.jsontext import MAX_DEPTH, MAX_INTEGER_DIGITS
from shared.settings import Settings
from tests.strict import strict_json, strict_lines
from tests.support import Emulators, functions, http_request, read_outcomes, response_json, start_emulators

PURE = settings(max_examples=200, deadline=None)
THROUGH_THE_APP = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = ("subscriptionId", "resourceGroupName", "registryName", "runId", "isArchiveEnabled")

# -- the contract's rules (§2), as an oracle independent of shared.events ----------------------------

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REGISTRY = re.compile(r"[A-Za-z0-9]{5,50}")
_RUN_ID = re.compile(r"[A-Za-z0-9\-_.]{1,128}")


def _group_ok(value: Any) -> bool:
    """1-90 characters of letters, digits, _ - . ( ), not ending in '.'."""
    return (
        isinstance(value, str) and 1 <= len(value) <= 90 and not value.endswith(".")
        and all(c.isalnum() or c in "_-.()" for c in value)
    )


RULES = {
    "subscriptionId": lambda v: isinstance(v, str) and _GUID.fullmatch(v) is not None,
    "resourceGroupName": _group_ok,
    "registryName": lambda v: isinstance(v, str) and _REGISTRY.fullmatch(v) is not None,
    "runId": lambda v: isinstance(v, str) and _RUN_ID.fullmatch(v) is not None and v not in (".", ".."),
    "isArchiveEnabled": lambda v: isinstance(v, bool),
}


def follows_the_rules(fields: dict[str, Any]) -> bool:
    """True when every field of a flat event satisfies contract §2."""
    return all(RULES[name](fields.get(name)) for name in FIELDS)


# -- strategies --------------------------------------------------------------------------------------

LETTERS_AND_DIGITS = st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Nd"))
subscription_ids = st.builds(lambda u, upper: str(u).upper() if upper else str(u), st.uuids(), st.booleans())
resource_groups = st.text(st.one_of(LETTERS_AND_DIGITS, st.sampled_from("_-.()")), min_size=1, max_size=90).filter(
    lambda s: not s.endswith(".")
)
registries = st.text(string.ascii_letters + string.digits, min_size=5, max_size=50)
run_ids = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=128).filter(lambda s: s not in (".", ".."))
valid_fields = st.fixed_dictionaries({
    "subscriptionId": subscription_ids, "resourceGroupName": resource_groups, "registryName": registries,
    "runId": run_ids, "isArchiveEnabled": st.booleans(),
})

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text())
KEYS = st.one_of(st.sampled_from([*FIELDS, "runResourceId", "specversion", "data", "eventType", "dataVersion", "id"]), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(KEYS, children, max_size=8)),
    max_leaves=25,
)


def _random_case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid event in one of the contract's shapes, with the fields it names."""
    fields = draw(valid_fields)
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in FIELDS and k != "runResourceId"), json_scalars, max_size=3))
    shape = draw(st.sampled_from(["flat", "resource-id", "cloudevent", "event-grid"]))
    if shape == "resource-id":
        fixed = [_random_case(draw, word) for word in ("subscriptions", "resourceGroups", "providers", "Microsoft.ContainerRegistry", "registries", "runs")]
        resource_id = (
            f"/{fixed[0]}/{fields['subscriptionId']}/{fixed[1]}/{fields['resourceGroupName']}/{fixed[2]}/{fixed[3]}"
            f"/{fixed[4]}/{fields['registryName']}/{fixed[5]}/{fields['runId']}"
        )
        data: dict[str, Any] = {"runResourceId": resource_id, "isArchiveEnabled": fields["isArchiveEnabled"]}
    else:
        data = dict(fields)
    data = {**extra, **data}
    if shape == "cloudevent":
        return {"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": data}, fields
    if shape == "event-grid":
        return {"id": "e", "eventType": "t", "subject": "s", "data": data, "dataVersion": "1", "eventTime": "2026-11-27T10:00:00Z"}, fields
    return data, fields


@st.composite
def mutated_flat_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid flat event with one field replaced by any JSON value, or left out."""
    event = dict(draw(valid_fields))
    name = draw(st.sampled_from(FIELDS))
    replacement = draw(st.one_of(st.just(None), json_scalars, json_values, st.text(string.printable, max_size=100)))
    if replacement is None and draw(st.booleans()):
        del event[name]
    else:
        event[name] = replacement
    return event


@st.composite
def resource_id_events(draw: st.DrawFn) -> dict[str, Any]:
    """A resource-id event whose segments are valid, or any text (slashes and all), in any spelling."""
    fields = draw(valid_fields)
    parts = [fields["subscriptionId"], fields["resourceGroupName"], fields["registryName"], fields["runId"]]
    for n in range(4):
        if draw(st.integers(0, 3)) == 0:
            parts[n] = draw(st.text(string.printable, max_size=40))
    provider = draw(st.sampled_from(["Microsoft.ContainerRegistry", "microsoft.containerregistry", "Microsoft.ContainerRegistry2", "Microsoft/ContainerRegistry"]))
    resource_id = f"/subscriptions/{parts[0]}/resourceGroups/{parts[1]}/providers/{provider}/registries/{parts[2]}/runs/{parts[3]}"
    return {"runResourceId": draw(st.one_of(st.just(resource_id), st.just(resource_id + "/"), st.just("x" + resource_id))),
            "isArchiveEnabled": fields["isArchiveEnabled"]}


def in_an_envelope(data: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The data inside a CloudEvent or an Event Grid event."""
    return st.one_of(
        data.map(lambda d: {"specversion": "1.0", "id": "e", "source": "/s", "type": "t", "data": d}),
        data.map(lambda d: {"id": "e", "eventType": "t", "subject": "s", "data": d, "dataVersion": "1", "eventTime": "2026-11-27T10:00:00Z"}),
    )


some_events = st.one_of(
    json_values,
    valid_events().map(lambda pair: pair[0]),
    mutated_flat_events(),
    resource_id_events(),
    in_an_envelope(st.one_of(mutated_flat_events(), resource_id_events(), json_values)),
)
"""Anything from arbitrary JSON to valid events, with the near misses in between."""

ENDPOINTS = ["https://management.azure.com", "https://management.usgovcloudapi.net", "http://127.0.0.1:8080", "https://arm.example.com:8443"]
SEGMENT = r"(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})+"


def path_shape(endpoint: str) -> re.Pattern[str]:
    """Contract §3's URL: {ARM_ENDPOINT}/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}/runs/{id}?api-version=2019-04-01."""
    return re.compile(
        re.escape(endpoint) + rf"/subscriptions/({SEGMENT})/resourceGroups/({SEGMENT})"
        rf"/providers/Microsoft\.ContainerRegistry/registries/({SEGMENT})/runs/({SEGMENT})\?api-version=2019-04-01"
    )


def request_fields(request: ArchiveRequest) -> dict[str, Any]:
    """The request's five fields by their event names."""
    return request.as_dict()


# -- the parser ----------------------------------------------------------------------------------------


@PURE
@given(raw=st.binary(max_size=300))
def test_any_bytes_decode_or_are_invalid(raw: bytes) -> None:
    """decode_json returns a value or raises InvalidEvent naming the body; nothing else escapes."""
    try:
        decode_json(raw)
    except InvalidEvent as error:
        assert error.field == "body"


@PURE
@given(event=some_events)
def test_whatever_the_parser_accepts_follows_the_contracts_rules(event: Any) -> None:
    """Any JSON value is an ArchiveRequest that satisfies §2, or InvalidEvent naming a field."""
    try:
        request = parse_event(event, Settings())
    except InvalidEvent as error:
        assert error.field and error.field in str(error)
        return
    assert follows_the_rules(request_fields(request))


@PURE
@given(event=mutated_flat_events())
def test_a_flat_event_is_accepted_exactly_when_it_follows_the_rules(event: dict[str, Any]) -> None:
    """One field changed to anything: accepted if and only if the contract's rules still hold."""
    try:
        request = parse_event(event, Settings())
    except InvalidEvent:
        assert not follows_the_rules(event)
    else:
        assert follows_the_rules(event) and request_fields(request) == {name: event[name] for name in FIELDS}


@PURE
@given(event_and_fields=valid_events(), endpoint=st.sampled_from(ENDPOINTS))
def test_a_valid_event_becomes_a_url_of_the_contracts_shape_under_arm_endpoint(
    event_and_fields: tuple[dict[str, Any], dict[str, Any]], endpoint: str
) -> None:
    """Every shape is accepted; the URL is ARM_ENDPOINT + the run's path, each segment percent-decoding to its value."""
    event, fields = event_and_fields
    settings_ = Settings.from_env({"ARM_ENDPOINT": endpoint})
    request = parse_event(event, settings_)
    assert request_fields(request) == fields
    url = ArmClient(None, None, settings_).run_url(request)  # type: ignore[arg-type]  # run_url needs neither
    assert url.startswith(endpoint + "/subscriptions/")
    match = path_shape(endpoint).fullmatch(url)
    assert match, url
    segments = match.groups()
    assert [unquote(s) for s in segments] == [fields[n] for n in ("subscriptionId", "resourceGroupName", "registryName", "runId")]
    assert not {".", ".."} & set(segments)
    assert urlsplit(url).netloc == urlsplit(endpoint).netloc


# -- through the app ---------------------------------------------------------------------------------


class NewOutcomes:
    """The outcomes written since the last call."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen = 0

    def __call__(self) -> list[dict[str, Any]]:
        records = read_outcomes(self._path)
        fresh, self._seen = records[self._seen:], len(records)
        return fresh


def _message(body: bytes) -> ServiceBusMessage:
    return ServiceBusMessage(body=body, message_id="prop", delivery_count=1, application_properties={}, user_properties={})


LINE_BREAKING_TEXT = json.dumps({"runId": "a\u2028b\x85c\u2029"}, ensure_ascii=False).encode()
"""Characters str.splitlines() breaks at, which JSON leaves as they are: an OUTCOME_FILE line must still be one line."""


@THROUGH_THE_APP
@given(raw=st.one_of(st.binary(max_size=300), some_events.map(lambda v: json.dumps(v).encode())))
@example(raw=LINE_BREAKING_TEXT)
def test_the_queue_turns_anything_into_one_outcome(raw: bytes, functions: dict[str, Any], arm: ArmEmulator, outcome_file: Path) -> None:
    """Bytes or JSON: the function returns, one outcome is published; ARM is asked only about a valid run."""
    new = NewOutcomes(outcome_file)
    new()
    patches = arm.stats()["patches"]
    assert functions["archive_queue"](_message(raw)) is None
    (record,) = new()
    body = record["body"]
    if body["outcome"] == "rejected":
        assert body["error"]["code"] == "InvalidEvent" and arm.stats()["patches"] == patches
    else:
        assert follows_the_rules(body["request"]) and arm.stats()["patches"] == patches + 1


@THROUGH_THE_APP
@given(raw=st.binary(max_size=300))
def test_the_queue_rejects_arbitrary_bytes(raw: bytes, functions: dict[str, Any], arm: ArmEmulator, outcome_file: Path) -> None:
    """Bytes that are not a valid event give `rejected` carrying them, and no ARM call."""
    try:
        assume(not follows_the_rules(json.loads(raw)))
    except (ValueError, TypeError, AttributeError):
        pass
    new = NewOutcomes(outcome_file)
    new()
    functions["archive_queue"](_message(raw))
    (record,) = new()
    assert record["body"]["outcome"] == "rejected" and record["subject"] == "RunArchiveEventRejected"
    assert record["body"]["rawEvent"] == raw.decode("utf-8", "replace")
    assert arm.stats()["requests"] == 0


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """The HTTP routes against emulators that create any run they are asked about."""
    with start_emulators(monkeypatch, tmp_path) as running:
        running.arm.auto_create = True
        yield running


def _post(body: bytes) -> Any:
    return functions()["archive_events"](http_request("POST", "archive-events", body=body, headers={"Content-Type": "application/json"}))


@THROUGH_THE_APP
@given(raw=st.one_of(
    st.binary(max_size=300),
    some_events.map(lambda v: json.dumps(v).encode()),
    st.lists(some_events, max_size=4).map(lambda v: json.dumps(v).encode()),
))
@example(raw=b"\x00")
@example(raw=LINE_BREAKING_TEXT)
def test_posting_anything_answers_200_or_a_4xx(raw: bytes, http: Emulators) -> None:
    """Never a 5xx or an exception: a 4xx for what is not an event, and each outcome published once."""
    new = NewOutcomes(http.outcome_file)
    new()
    response = _post(raw)
    body = response_json(response)
    published = new()
    if response.status_code == 200 and "outcomes" in body:
        assert [record["body"] for record in published] == body["outcomes"]
        for outcome in body["outcomes"]:
            assert outcome["outcome"] == "rejected" or follows_the_rules(outcome["request"])
    elif response.status_code == 200 and "validationResponse" not in body:
        assert body["outcome"] == "succeeded" and follows_the_rules(body["request"])
        assert [record["body"] for record in published] == [body]
    elif response.status_code != 200:
        assert 400 <= response.status_code < 500, response.status_code
        assert [record["body"] for record in published] == [body] and body["outcome"] == "rejected"


@THROUGH_THE_APP
@given(event_and_fields=valid_events())
def test_posting_a_valid_event_updates_exactly_that_run(event_and_fields: tuple[dict[str, Any], dict[str, Any]], http: Emulators) -> None:
    """200 succeeded, and the emulator, decoding the URL on its side, updated the run of exactly those names."""
    event, fields = event_and_fields
    response = _post(json.dumps(event).encode())
    assert response.status_code == 200, response_json(response)
    assert response_json(response)["request"] == fields
    run = http.arm.get_run(fields["subscriptionId"], fields["resourceGroupName"], fields["registryName"], fields["runId"])
    assert run is not None and run["properties"]["isArchiveEnabled"] is fields["isArchiveEnabled"]


ROUTE_VALUES = st.one_of(st.text(max_size=60), st.text(string.printable, max_size=60))


@st.composite
def mirror_requests(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """Route values (valid, or any text) and a body (a flag, any JSON, or any bytes)."""
    fields = draw(valid_fields)
    route = {name: fields[name] for name in FIELDS[:4]}
    for name in FIELDS[:4]:
        if draw(st.integers(0, 3)) == 0:
            route[name] = draw(ROUTE_VALUES)
    body = draw(st.one_of(
        st.builds(lambda flag: json.dumps({"isArchiveEnabled": flag}).encode(), st.booleans()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=100),
    ))
    return route, body


@THROUGH_THE_APP
@given(request=mirror_requests())
def test_the_mirror_answers_200_for_a_valid_request_and_a_4xx_otherwise(request: tuple[dict[str, str], bytes], http: Emulators) -> None:
    """Any route values and body: 200 with the Run exactly when both are valid, else a 4xx in ARM's error shape."""
    route, raw = request
    try:
        payload = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        payload = None
    flag = payload.get("isArchiveEnabled") if isinstance(payload, dict) else None
    valid = follows_the_rules({**route, "isArchiveEnabled": flag})
    new = NewOutcomes(http.outcome_file)
    new()
    response = functions()["arm_patch_run"](http_request(
        "PATCH", "subscriptions/x", body=raw, headers={"Content-Type": "application/json"}, route_params=route,
    ))
    body = response_json(response)
    (record,) = new()
    if valid:
        assert response.status_code == 200, body
        assert body["properties"]["isArchiveEnabled"] is flag
        assert http.arm.get_run(route["subscriptionId"], route["resourceGroupName"], route["registryName"], route["runId"]) == body
        assert record["body"]["outcome"] == "succeeded"
    else:
        assert 400 <= response.status_code < 500 and set(body) == {"error"}
        assert record["body"]["outcome"] == "rejected"


@THROUGH_THE_APP
@given(origin=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=100))
def test_the_webhook_handshake_echoes_any_origin(origin: str, http: Emulators) -> None:
    """OPTIONS with any WebHook-Request-Origin answers 200 allowing exactly that origin, and publishes nothing."""
    response = functions()["archive_events_options"](http_request("OPTIONS", "archive-events", headers={"WebHook-Request-Origin": origin}))
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == origin and response.headers["WebHook-Allowed-Rate"] == "*"
    assert http.outcomes() == []


# -- hostile JSON text through every entry point (contract §2, last rule) ------------------------------
#
# Bodies are generated as text, so they can hold what json.dumps never writes: NaN, Infinity, 1e999,
# integers past the digit limit, lone-surrogate escapes, repeated keys and deep nesting, alone, inside
# otherwise valid events, and as batch elements. Every answer and outcome line is read back strictly.


HOSTILE_THROUGH_THE_APP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BAD_SCALARS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "9" * 5000, '"\\ud800"', '"a\\udfffb"', '"\\ud83d"']
GOOD_SCALARS = ['"\\ud83d\\ude00"', "1e308", "-0", "0.5e-999", "7" * MAX_INTEGER_DIGITS, '"\\u0000\\u2028"', '""']
any_strings = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
scalar_texts = st.one_of(
    st.sampled_from(BAD_SCALARS + GOOD_SCALARS),
    json_scalars.map(json.dumps),
    any_strings.map(json.dumps),  # ensure_ascii: lone surrogates become \\udXXX escapes
)
key_texts = st.one_of(st.sampled_from(['"runId"', '"isArchiveEnabled"', '"data"', '"\\ud800"']), any_strings.map(json.dumps))
hostile_texts = st.recursive(
    scalar_texts,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(key_texts, inner), max_size=4).map(lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"),
        st.tuples(st.integers(MAX_DEPTH - 3, 3000), inner).map(lambda pair: "[" * pair[0] + pair[1] + "]" * pair[0]),
    ),
    max_leaves=12,
)
valid_with_a_hostile_extra = st.tuples(valid_events(), scalar_texts).map(lambda pair: json.dumps(pair[0][0])[:-1] + ', "zzExtra": ' + pair[1] + "}")
hostile_bodies = st.one_of(
    hostile_texts.map(str.encode),
    valid_with_a_hostile_extra.map(str.encode),
    st.lists(st.one_of(hostile_texts, valid_with_a_hostile_extra, valid_events().map(lambda pair: json.dumps(pair[0]))), min_size=1, max_size=4)
    .map(lambda items: ("[" + ",".join(items) + "]").encode()),
    st.binary(max_size=200),
    st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf", b" \n"]), valid_events().map(lambda pair: json.dumps(pair[0]).encode())).map(b"".join),
)
mirror_bodies = st.one_of(
    hostile_bodies,
    st.tuples(st.booleans(), scalar_texts).map(lambda pair: f'{{"isArchiveEnabled": {json.dumps(pair[0])}, "zzExtra": {pair[1]}}}'.encode()),
)
CONTENT_TYPES = {
    "application/json": True, "Application/JSON; charset=utf-8": True, "application/json;": True, "text/json": True,
    "application/cloudevents+json; charset=UTF-8": True, "application/cloudevents-batch+json": True, "APPLICATION/VND.ACME+JSON": True,
    "": True, "text/plain": False, "application/xml": False, "application/x-www-form-urlencoded": False,
    "multipart/form-data; boundary=x": False, "application/jsonx": False, "json": False, "application/json-patch": False,
}


def is_strict(raw: bytes) -> bool:
    """The oracle: UTF-8 (a BOM allowed) strict JSON, unique keys, at most MAX_DEPTH levels, integers within the limit."""

    def refuse(*_: Any) -> Any:
        raise ValueError("not strict")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("repeated key")
        return dict(pairs)

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
            raise ValueError("too many digits")
        return int(text)

    try:
        value = json.loads(raw.decode("utf-8-sig"), parse_constant=refuse, parse_int=integer, object_pairs_hook=unique,
                           parse_float=lambda t: float(t) if abs(float(t)) != float("inf") else refuse())
        strict_json(json.dumps(value))  # ensure_ascii: a lone surrogate shows as an escape, refused below
    except (ValueError, RecursionError, AssertionError, UnicodeError):
        return False

    def depth_ok(item: Any, depth: int) -> bool:
        if isinstance(item, str):
            return not any(0xD800 <= ord(c) <= 0xDFFF for c in item)
        if isinstance(item, dict):
            return depth <= MAX_DEPTH and all(depth_ok(k, depth) and depth_ok(v, depth + 1) for k, v in item.items())
        if isinstance(item, list):
            return depth <= MAX_DEPTH and all(depth_ok(v, depth + 1) for v in item)
        return True

    return depth_ok(value, 1)


def assert_one_outcome_per_event(raw: bytes, answer: Any, published: list[dict[str, Any]], arm_requests: int) -> None:
    """A batch: one outcome per element in order; anything else: one outcome. A body that is not strict JSON never reaches ARM."""
    if isinstance(answer, dict) and "outcomes" in answer:
        assert [record["body"] for record in published] == answer["outcomes"]
        assert len(answer["outcomes"]) == len(json.loads(raw.decode("utf-8-sig")))
    else:
        assert len(published) == 1
    if not is_strict(raw):
        (record,) = published
        assert record["body"]["outcome"] == "rejected" and record["body"]["error"]["message"].startswith("body: ")
        assert arm_requests == 0


@HOSTILE_THROUGH_THE_APP
@given(raw=hostile_bodies)
def test_the_queue_gives_any_hostile_body_one_strict_outcome(raw: bytes, http: Emulators) -> None:
    """The queue function returns; one outcome, strict JSON; a non-strict body is rejected naming `body` without ARM."""
    before, requests = len(strict_lines(http.outcome_file)), http.arm.stats()["requests"]
    assert functions()["archive_queue"](_message(raw)) is None
    published = strict_lines(http.outcome_file)[before:]
    assert len(published) == 1
    assert_one_outcome_per_event(raw, None, published, http.arm.stats()["requests"] - requests)


@HOSTILE_THROUGH_THE_APP
@given(raw=hostile_bodies, content_type=st.sampled_from(sorted(CONTENT_TYPES)))
def test_posting_any_hostile_body_answers_strict_json_with_one_outcome_per_event(raw: bytes, content_type: str, http: Emulators) -> None:
    """Any body under any content type: 415 publishing nothing, or a strict answer with one strict outcome per event; never a 5xx."""
    before, requests = len(strict_lines(http.outcome_file)), http.arm.stats()["requests"]
    headers = {"Content-Type": content_type} if content_type else {}
    response = functions()["archive_events"](http_request("POST", "archive-events", body=raw, headers=headers))
    answer = strict_json(response.get_body())
    published = strict_lines(http.outcome_file)[before:]
    if not CONTENT_TYPES[content_type]:
        assert response.status_code == 415 and published == []
        return
    assert response.status_code < 500, answer
    if "validationResponse" in answer:
        assert published == [] and response.status_code == 200
        return
    assert_one_outcome_per_event(raw, answer, published, http.arm.stats()["requests"] - requests)
    if "outcomes" not in answer:
        assert published[0]["body"] == answer


@HOSTILE_THROUGH_THE_APP
@given(raw=mirror_bodies, route=st.one_of(st.just(None), st.fixed_dictionaries({name: ROUTE_VALUES for name in FIELDS[:4]})))
@example(raw=b'{"isArchiveEnabled": true, "zzExtra": "\\ud800"}', route=None)
@example(raw=b'{"isArchiveEnabled": false, "zzExtra": 1e999}', route=None)
def test_the_mirror_answers_any_hostile_body_in_strict_json_with_one_outcome(raw: bytes, route: dict[str, str] | None, http: Emulators) -> None:
    """The PATCH mirror: a strict Run or a strict ARM error shape, one strict outcome; a non-strict body never reaches ARM."""
    before, requests = len(strict_lines(http.outcome_file)), http.arm.stats()["requests"]
    params = route or {"subscriptionId": "4385cf00-2d3a-425a-832f-f4285b1c9dce", "resourceGroupName": "g", "registryName": "myRegistry", "runId": "r1"}
    response = functions()["arm_patch_run"](http_request("PATCH", "subscriptions/x", body=raw, headers={"Content-Type": "application/json"}, route_params=params))
    answer = strict_json(response.get_body())
    published = strict_lines(http.outcome_file)[before:]
    assert response.status_code < 500 and len(published) == 1
    assert (response.status_code == 200) is (published[0]["body"]["outcome"] == "succeeded")
    if response.status_code != 200:
        assert set(answer) == {"error"}
    if not is_strict(raw):
        assert answer["error"]["code"] == "InvalidEvent" and http.arm.stats()["requests"] == requests
