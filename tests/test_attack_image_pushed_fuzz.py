"""Attack on shape 4 through POST archive-events (contract §2 shape 4, §7): hostile topics, repositories and digests.

Generated ImagePushed events (Event Grid and CloudEvents) carry registry ids with odd segments, and
repositories holding quotes, OData operators (`') or true or contains(x,'`), unicode and near-limit lengths.
Each is answered 200 {"outcomes": [...]} with at least one outcome, strict JSON throughout; ARM is asked
only for the event's own registry, and the `$filter` it receives is exactly one `contains` of the image as
an OData string literal, whatever the repository held.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from emulators import ArmEmulator
from tests.strict import strict_json, strict_lines
from tests.support import SUB, http_request

GROUP, REGISTRY = "pushGroup", "pushRegistry"
REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
INJECTIONS = ["') or true or contains(x,'", "'", "''", "a' or IsArchiveEnabled eq false or 'a", "%27", "\\'", "é/ü", "a\u202eb"]
repositories = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="@,"), min_size=1, max_size=256),
    st.text(min_size=0, max_size=20),
)
digests = st.one_of(st.just("sha256:" + "ab" * 32), st.text(max_size=80), st.sampled_from(["sha256:'", "sha256:a') or (true"]))
topics = st.one_of(
    st.just(REGISTRY_ID),
    st.just(REGISTRY_ID.upper().replace(SUB.upper(), SUB).replace(GROUP.upper(), GROUP).replace(REGISTRY.upper(), REGISTRY)),
    st.sampled_from(
        [REGISTRY_ID + "/", REGISTRY_ID + "/runs/x", REGISTRY_ID.replace(GROUP, "g/../x"), REGISTRY_ID.replace(REGISTRY, "a'b")]
    ),
    st.text(max_size=60),
)


def pushed(topic: str, repository: Any, digest: Any, cloud: bool) -> dict[str, Any]:
    target = {"repository": repository, "digest": digest, "tag": "v1"}
    if cloud:
        return {"specversion": "1.0", "id": "ce-1", "source": topic, "type": "Microsoft.ContainerRegistry.ImagePushed",
                "data": {"target": target}}
    return {"id": "eg-1", "topic": topic, "eventType": "Microsoft.ContainerRegistry.ImagePushed", "dataVersion": "1.0",
            "eventTime": "2026-11-27T16:30:00Z", "subject": "s", "data": {"target": target}}


def run_list_filters(arm: ArmEmulator, since: int) -> list[tuple[str, str]]:
    return [
        (entry["path"].split("?")[0], entry["query"].get("$filter", ""))
        for entry in arm.requests_log[since:]
        if entry["method"] == "GET" and entry["path"].split("?")[0].endswith("/runs")
    ]


@hypothesis_settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=topics, repository=repositories, digest=digests, cloud=st.booleans())
def test_any_push_is_answered_with_outcomes_and_never_widens_the_filter(
    functions: Any, arm: ArmEmulator, outcome_file: Path, topic: str, repository: Any, digest: Any, cloud: bool
) -> None:
    """200 with outcomes; every line strict; at most one listing, of the event's registry, with the image quoted."""
    lines_before, log_before = len(strict_lines(outcome_file)), len(arm.requests_log)
    body = json.dumps(pushed(topic, repository, digest, cloud)).encode()
    request = http_request("POST", "archive-events", body=body, headers={"Content-Type": "application/json"})
    response = functions["archive_events"](request)
    answer = strict_json(response.get_body())
    lines = strict_lines(outcome_file)[lines_before:]
    if response.status_code == 200:
        assert len(answer["outcomes"]) == len(lines) >= 1
    else:
        assert response.status_code == 400 and answer["error"]["code"] == "InvalidEvent" and len(lines) == 1
    listings = run_list_filters(arm, log_before)
    assert len(listings) <= 1
    for path, sent in listings:
        assert path.lower() == (REGISTRY_ID + "/runs").lower()
        image = f"{repository}@{digest}"
        assert sent == "contains(OutputImageManifests, '" + image.replace("'", "''") + "')"
    assert not any(entry["method"] == "PATCH" for entry in arm.requests_log[log_before:])
