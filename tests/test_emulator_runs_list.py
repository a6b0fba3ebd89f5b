"""Specification of the ARM emulator's Runs - List: `$filter` over RunFilter, `$top`, `nextLink` paging, seeded registries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators import ArmEmulator, Fault
from emulators.arm import SEED_RUN
from emulators.arm_client import ArmEmulatorClient
from emulators.run_filter import InvalidFilter, filter_view, parse_run_filter
from emulators.seed import SEED_DAYS, seeded_runs
from emulators.specs import example_list, schema_errors

REPO_ROOT = Path(__file__).resolve().parents[1]
SUB, RG, _, _ = SEED_RUN
REG = "seededRegistry"
AUTH = {"Authorization": "Bearer test-token"}
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
COUNT = 400


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arm() -> Iterator[ArmEmulator]:
    """An emulator with one seeded registry of COUNT runs (tests that change it use `fresh_arm`)."""
    with ArmEmulator(page_size=25) as emulator:
        emulator.seed_registry(SUB, RG, REG, COUNT, seed=7, now=NOW)
        yield emulator


@pytest.fixture
def fresh_arm() -> Iterator[ArmEmulator]:
    """A started emulator of its own, with a seeded registry of 60 runs, page size 10."""
    with ArmEmulator(page_size=10) as emulator:
        emulator.seed_registry(SUB, RG, REG, 60, seed=1, now=NOW)
        yield emulator


@pytest.fixture(scope="module")
def seeded() -> list[dict[str, Any]]:
    """The run bodies the module emulator holds (the seed is deterministic)."""
    return seeded_runs(SUB, RG, REG, COUNT, seed=7, now=NOW)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A keep-alive session that ignores proxy settings (loopback only)."""
    with requests.Session() as http:
        http.trust_env = False
        yield http


def runs_url(base: str, registry: str = REG) -> str:
    """URL of Runs - List (without the query)."""
    return f"{base}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/{registry}/runs"


def list_all(session: requests.Session, base: str, params: dict[str, str] | None = None, *,
             validate: bool = True) -> tuple[list[dict], list[dict]]:
    """Follow every nextLink; returns (runs, pages), checking each page against RunListResult unless told not to."""
    response = session.get(runs_url(base), params={"api-version": "2019-04-01", **(params or {})}, headers=AUTH)
    pages: list[dict] = []
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        assert not validate or schema_errors("RunListResult", page) == []
        pages.append(page)
        if "nextLink" not in page:
            return [run for item in pages for run in item["value"]], pages
        response = session.get(page["nextLink"], headers=AUTH)


def newest_first(runs: list[dict[str, Any]]) -> list[str]:
    """Run ids in the order Runs - List returns them."""
    ordered = sorted(runs, key=lambda run: (run["properties"]["createTime"], run["properties"]["runId"]), reverse=True)
    return [run["name"] for run in ordered]


def _props(run: dict[str, Any]) -> dict[str, Any]:
    return run["properties"]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


TEN_DAYS_AGO = NOW - timedelta(days=10)
# ($filter, the same question asked of the run bodies in Python) - the oracle never goes through the parser.
FILTERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("TaskName eq 'release'", lambda p: p.get("task") == "release"),
    ("Status eq 'Succeeded' and IsArchiveEnabled eq false", lambda p: p["status"] == "Succeeded" and not p["isArchiveEnabled"]),
    ("Status ne 'Succeeded'", lambda p: p["status"] != "Succeeded"),
    ("RunType eq 'QuickBuild' or RunType eq 'QuickRun'", lambda p: p["runType"] in ("QuickBuild", "QuickRun")),
    ("(TaskName eq 'build-api' or TaskName eq 'build-web') and Status eq 'Failed'",
     lambda p: p.get("task") in ("build-api", "build-web") and p["status"] == "Failed"),
    ("TaskName eq 'build-api' or TaskName eq 'build-web' and Status eq 'Failed'",  # and binds tighter than or
     lambda p: p.get("task") == "build-api" or (p.get("task") == "build-web" and p["status"] == "Failed")),
    (f"CreateTime ge {_iso(TEN_DAYS_AGO)}", lambda p: _time(p["createTime"]) >= TEN_DAYS_AGO),
    (f"CreateTime lt datetime'{_iso(TEN_DAYS_AGO)}'", lambda p: _time(p["createTime"]) < TEN_DAYS_AGO),
    (f"{_iso(TEN_DAYS_AGO)} gt CreateTime", lambda p: _time(p["createTime"]) < TEN_DAYS_AGO),
    (f"FinishTime le {_iso(TEN_DAYS_AGO)}", lambda p: "finishTime" in p and _time(p["finishTime"]) <= TEN_DAYS_AGO),
    ("FinishTime eq null", lambda p: "finishTime" not in p),
    ("contains(OutputImageManifests, 'release/app:')",
     lambda p: any(i["repository"] == "release/app" for i in p.get("outputImages", []))),
    ("IsArchiveEnabled eq true", lambda p: p["isArchiveEnabled"]),
    ("taskname eq 'nightly' and STATUS eq 'Succeeded'", lambda p: p.get("task") == "nightly" and p["status"] == "Succeeded"),
    ("TaskName eq 'no-such-task'", lambda p: False),
    (f"(TaskName eq 'release' and Status eq 'Succeeded') and IsArchiveEnabled eq false and CreateTime ge {_iso(TEN_DAYS_AGO)}",
     lambda p: p.get("task") == "release" and p["status"] == "Succeeded" and not p["isArchiveEnabled"]
     and _time(p["createTime"]) >= TEN_DAYS_AGO),  # the shape of a policy sweep's $filter (contract §8)
    (f"CreateTime ge {TEN_DAYS_AGO.date().isoformat()}",
     lambda p: _time(p["createTime"]) >= datetime.combine(TEN_DAYS_AGO.date(), datetime.min.time(), timezone.utc)),
    ("CreateTime ge 2026-11-10T12:00:00.1234567+02:00",
     lambda p: _time(p["createTime"]) >= datetime(2026, 11, 10, 10, 0, 0, 123456, timezone.utc)),
    ("", lambda p: True),
]


# -- pages and the spec -----------------------------------------------------------------------------


def test_every_page_validates_and_every_run_is_a_spec_run(arm: ArmEmulator, session: requests.Session) -> None:
    """Paging through a seeded registry yields RunListResult pages of strictly valid Runs, each run once."""
    runs, pages = list_all(session, arm.url)

    assert len(runs) == COUNT and len({run["name"] for run in runs}) == COUNT
    assert len(pages) == COUNT // 25 and all(len(page["value"]) == 25 for page in pages)
    for run in runs:
        assert schema_errors("Run", run) == []


def test_page_has_the_shape_of_the_official_example(arm: ArmEmulator, session: requests.Session) -> None:
    """A page has the keys of the Runs_List example and its runs the example run's keys (plus what the run has)."""
    page = session.get(runs_url(arm.url), params={"api-version": "2019-04-01", "$top": "1"}, headers=AUTH).json()
    example = example_list()

    assert set(page) == set(example) and schema_errors("RunListResult", example) == []
    assert set(page["value"][0]) == set(example["value"][0])


def test_runs_are_listed_newest_first(arm: ArmEmulator, session: requests.Session, seeded: list[dict[str, Any]]) -> None:
    """Runs come newest createTime first, across pages."""
    runs, _ = list_all(session, arm.url)

    assert [run["name"] for run in runs] == newest_first(seeded)


@pytest.mark.parametrize(("odata", "oracle"), FILTERS, ids=[odata or "(empty)" for odata, _ in FILTERS])
def test_filter_selects_exactly_the_matching_runs(
    arm: ArmEmulator, session: requests.Session, seeded: list[dict[str, Any]], odata: str,
    oracle: Callable[[dict[str, Any]], bool],
) -> None:
    """Each `$filter` lists the runs (and only those) that the same question asked in Python selects, in order."""
    runs, _ = list_all(session, arm.url, {"$filter": odata})

    assert [run["name"] for run in runs] == newest_first([run for run in seeded if oracle(_props(run))])


def test_contains_image_digest_finds_the_run_that_pushed_it(
    arm: ArmEmulator, session: requests.Session, seeded: list[dict[str, Any]]
) -> None:
    """`contains(OutputImageManifests, 'repo@digest')` (az acr task list-runs --image) finds the pushing run."""
    pusher = next(run for run in seeded if _props(run).get("outputImages"))
    image = _props(pusher)["outputImages"][0]
    odata = f"contains(OutputImageManifests, '{image['repository']}@{image['digest']}')"

    runs, _ = list_all(session, arm.url, {"$filter": odata})

    assert [run["name"] for run in runs] == [pusher["name"]]


def test_run_id_filter_finds_one_run(arm: ArmEmulator, session: requests.Session, seeded: list[dict[str, Any]]) -> None:
    """`RunId eq '…'` lists that run alone."""
    wanted = seeded[COUNT // 2]["name"]

    runs, pages = list_all(session, arm.url, {"$filter": f"RunId eq '{wanted}'"})

    assert [run["name"] for run in runs] == [wanted] and len(pages) == 1


INVALID_FILTERS = [
    ("not IsArchiveEnabled", "not"),
    ("RunId add 1 eq 2", "arithmetic"),
    ("Owner eq 'me'", "unknown-field"),
    ("startswith(TaskName, 'rel')", "other-function"),
    ("(TaskName eq 'a'", "unbalanced"),
    ("TaskName eq 1", "wrong-literal-type"),
    ("IsArchiveEnabled eq 'yes'", "string-for-boolean"),
    ("CreateTime ge 'yesterday'", "bad-datetime"),
    ("IsArchiveEnabled gt false", "ordered-boolean"),
    ("TaskName eq 'a' and", "dangling-and"),
    ("TaskName eq 'a' TaskName", "trailing"),
    ("TaskName in ('a', 'b')", "in"),
    ("contains(TaskName)", "contains-arity"),
    ("contains(CreateTime, '2026')", "contains-datetime"),
    ("TaskName", "string-as-boolean"),
    ("'unterminated", "unterminated-string"),
]


@pytest.mark.parametrize("odata", [odata for odata, _ in INVALID_FILTERS], ids=[name for _, name in INVALID_FILTERS])
def test_unusable_filter_is_an_arm_400_invalid_filter(arm: ArmEmulator, session: requests.Session, odata: str) -> None:
    """A `$filter` outside the RunFilter subset is refused 400 `InvalidFilter` in ARM's error shape."""
    response = session.get(runs_url(arm.url), params={"api-version": "2019-04-01", "$filter": odata}, headers=AUTH)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidFilter" and set(error) == {"code", "message"} and error["message"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("()' ,:.-+TZ0123456789abcdeilnoqrstuvwxyzACFIMORST@_")), max_size=80))
def test_any_filter_text_parses_or_is_refused_cleanly(text: str) -> None:
    """Hostile `$filter` text either compiles to a predicate answering a bool, or raises InvalidFilter; nothing else."""
    try:
        predicate = parse_run_filter(text)
    except InvalidFilter:
        return
    assert predicate(filter_view(seeded_runs(SUB, RG, REG, 1, seed=0, now=NOW)[0])) in (True, False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_hostile_filter_over_http_is_200_or_400_never_500(arm: ArmEmulator, session: requests.Session, text: str) -> None:
    """Whatever the `$filter`, the emulator answers a page or an ARM 400, never an emulator error."""
    response = session.get(runs_url(arm.url), params={"api-version": "2019-04-01", "$filter": text, "$top": "1"},
                           headers=AUTH)

    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "InvalidFilter"


# -- $top and nextLink ------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page_size=st.integers(4, 60), top=st.none() | st.integers(1, 450))
def test_any_page_size_and_top_list_the_same_runs(
    arm: ArmEmulator, session: requests.Session, seeded: list[dict[str, Any]], page_size: int, top: int | None
) -> None:
    """Pages hold at most the page size; together they are the newest `$top` matching runs, each once."""
    arm.set_page_size(page_size)
    try:
        params = {"$filter": "IsArchiveEnabled eq false"} | ({} if top is None else {"$top": str(top)})
        runs, pages = list_all(session, arm.url, params, validate=False)  # the shape is pinned above; this pins the order
    finally:
        arm.set_page_size(25)

    expected = newest_first([run for run in seeded if not _props(run)["isArchiveEnabled"]])[:top]
    assert [run["name"] for run in runs] == expected
    assert all(len(page["value"]) <= page_size for page in pages)
    assert all(page["value"] for page in pages) and len(pages) == max(1, -(-len(expected) // page_size))


def test_next_link_is_on_the_emulator_origin_and_keeps_the_query(arm: ArmEmulator, session: requests.Session) -> None:
    """nextLink: same origin and path, api-version, the same $filter, the $top left, and a $skipToken."""
    odata = "Status eq 'Succeeded'"
    page = session.get(runs_url(arm.url), params={"api-version": "2019-04-01", "$filter": odata, "$top": "60"},
                       headers=AUTH).json()

    link = urlsplit(page["nextLink"])
    query = parse_qs(link.query)
    assert f"{link.scheme}://{link.netloc}" == arm.url and link.path == urlsplit(runs_url(arm.url)).path
    assert query["api-version"] == ["2019-04-01"] and query["$filter"] == [odata]
    assert query["$top"] == [str(60 - len(page["value"]))] and query["$skipToken"][0]


def test_next_link_can_be_put_on_a_foreign_origin(fresh_arm: ArmEmulator, session: requests.Session) -> None:
    """set_next_link_origin makes nextLink point elsewhere (to test clients that must refuse it)."""
    fresh_arm.set_next_link_origin("https://evil.example:8443")

    page = session.get(runs_url(fresh_arm.url), params={"api-version": "2019-04-01"}, headers=AUTH).json()

    assert page["nextLink"].startswith(f"https://evil.example:8443/subscriptions/{SUB}/resourceGroups/{RG}/")
    fresh_arm.set_next_link_origin(None)
    assert session.get(runs_url(fresh_arm.url), params={"api-version": "2019-04-01"}, headers=AUTH).json()[
        "nextLink"].startswith(fresh_arm.url)


def test_archiving_between_pages_skips_no_run(fresh_arm: ArmEmulator, session: requests.Session) -> None:
    """The skip token is a cursor, not an offset: archiving page 1's runs leaves page 2 with the next runs."""
    odata = "IsArchiveEnabled eq false"
    wanted = [run["name"] for run in list_all(session, fresh_arm.url, {"$filter": odata})[0]]
    response = session.get(runs_url(fresh_arm.url), params={"api-version": "2019-04-01", "$filter": odata}, headers=AUTH)
    seen: list[str] = []
    while True:
        page = response.json()
        for run in page["value"]:
            seen.append(run["name"])
            patched = session.patch(f"{runs_url(fresh_arm.url)}/{run['name']}?api-version=2019-04-01",
                                    json={"isArchiveEnabled": True}, headers=AUTH)
            assert patched.status_code == 200
        if "nextLink" not in page:
            break
        response = session.get(page["nextLink"], headers=AUTH)

    assert seen == wanted
    assert list_all(session, fresh_arm.url, {"$filter": odata})[0] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"$top": "0"}, "InvalidParameter"),
        ({"$top": "-3"}, "InvalidParameter"),
        ({"$top": "ten"}, "InvalidParameter"),
        ({"$top": "2147483648"}, "InvalidParameter"),
        ({"$skipToken": "not-a-token"}, "InvalidSkipToken"),
        ({"$skipToken": "MjAyNg"}, "InvalidSkipToken"),  # base64 of "2026": no run id
        ({"api-version": "2018-09-01"}, "InvalidApiVersionParameter"),
    ],
    ids=["top-zero", "top-negative", "top-word", "top-past-int32", "skip-token-garbage", "skip-token-wrong-shape",
         "old-api-version"],
)
def test_bad_paging_parameters_are_arm_400s(arm: ArmEmulator, session: requests.Session, params: dict, code: str) -> None:
    """`$top` must be a positive int32, `$skipToken` one of ours, api-version 2019-04-01."""
    response = session.get(runs_url(arm.url), params={"api-version": "2019-04-01", **params}, headers=AUTH)

    assert response.status_code == 400 and response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "url_of", "headers", "status", "code"),
    [
        ("POST", runs_url, AUTH, 405, "MethodNotAllowed"),
        ("GET", runs_url, {}, 401, "AuthenticationFailed"),
        ("GET", lambda base: runs_url(base, "ab"), AUTH, 400, "InvalidParameter"),
    ],
    ids=["post", "no-token", "short-registry-name"],
)
def test_runs_collection_refuses_like_arm(
    arm: ArmEmulator, session: requests.Session, method: str, url_of: Callable[[str], str], headers: dict, status: int,
    code: str,
) -> None:
    """The collection only lists, with a bearer token, for a valid registry name."""
    response = session.request(method, url_of(arm.url), params={"api-version": "2019-04-01"}, headers=headers)

    assert response.status_code == status and response.json()["error"]["code"] == code


def test_unknown_registry_lists_nothing(arm: ArmEmulator, session: requests.Session) -> None:
    """A registry without runs answers an empty page without nextLink."""
    response = session.get(runs_url(arm.url, "emptyRegistry"), params={"api-version": "2019-04-01"}, headers=AUTH)

    assert response.status_code == 200 and response.json() == {"value": []}


def test_list_faults_are_scripted_per_registry(fresh_arm: ArmEmulator, session: requests.Session) -> None:
    """script_list queues faults for a registry's listing requests, popped one per page request."""
    fresh_arm.script_list(REG, Fault.status(429, retry_after="2"), Fault.status(503))
    params = {"api-version": "2019-04-01"}

    answers = [session.get(runs_url(fresh_arm.url), params=params, headers=AUTH) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [429, 503, 200]
    assert answers[0].headers["Retry-After"] == "2" and answers[0].json()["error"]["code"] == "TooManyRequests"
    assert fresh_arm.stats()["lists"] == 3


# -- seeded registries ------------------------------------------------------------------------------


def test_seeding_is_deterministic_for_a_seed_and_anchor() -> None:
    """The same (seed, now) gives the same runs; another seed gives other runs."""
    assert seeded_runs(SUB, RG, REG, 50, seed=3, now=NOW) == seeded_runs(SUB, RG, REG, 50, seed=3, now=NOW)
    assert seeded_runs(SUB, RG, REG, 50, seed=3, now=NOW) != seeded_runs(SUB, RG, REG, 50, seed=4, now=NOW)


def test_seeded_runs_have_a_realistic_spread() -> None:
    """Many tasks, every run type, mostly successes with some failures, 40 days, images only from successful builds."""
    runs = [_props(run) for run in seeded_runs(SUB, RG, REG, 2000, seed=11, now=NOW)]
    statuses = Counter(p["status"] for p in runs)
    ages = [NOW - _time(p["createTime"]) for p in runs]

    assert len({p["runId"] for p in runs}) == 2000
    assert len({p.get("task") for p in runs}) >= 5
    assert {p["runType"] for p in runs} == {"QuickBuild", "QuickRun", "AutoBuild", "AutoRun"}
    assert statuses.most_common(1)[0][0] == "Succeeded" and statuses["Failed"] > 50 and len(statuses) >= 6
    assert min(ages) >= timedelta(0) and timedelta(days=30) < max(ages) <= timedelta(days=SEED_DAYS)
    assert sum(age < timedelta(days=10) for age in ages) > sum(age > timedelta(days=30) for age in ages)  # busiest lately
    with_images = [p for p in runs if p.get("outputImages")]
    assert with_images and all(p["status"] == "Succeeded" and p["runType"].endswith("Build") for p in with_images)
    assert all("finishTime" not in p for p in runs if p["status"] in ("Queued", "Started", "Running"))
    assert 0 < sum(p["isArchiveEnabled"] for p in runs) < 400


def test_seeded_registry_through_the_control_api(fresh_arm: ArmEmulator, session: requests.Session) -> None:
    """The control API seeds registries, sets the page size and scripts listing faults from another process."""
    client = ArmEmulatorClient(fresh_arm.url)

    added = client.seed_registry(SUB, RG, "otherRegistry", 12, seed=5, now="2026-11-20T12:00:00Z")
    client.set_paging(page_size=5)
    client.script_list("otherRegistry", Fault.status(500))

    url = runs_url(fresh_arm.url, "otherRegistry")
    assert session.get(url, params={"api-version": "2019-04-01"}, headers=AUTH).status_code == 500
    first = session.get(url, params={"api-version": "2019-04-01"}, headers=AUTH).json()
    assert added == 12 and len(first["value"]) == 5 and "nextLink" in first
    assert [run["name"] for run in first["value"]] == newest_first(
        seeded_runs(SUB, RG, "otherRegistry", 12, seed=5, now=NOW))[:5]


def test_arm_module_seeds_registries_from_the_command_line(session: requests.Session) -> None:
    """`python -m emulators.arm --seed-registry S/G/R=N --page-size P` serves that registry in pages of P."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.arm", "--port", "0", "--seed-registry", f"{SUB}/{RG}/{REG}=30",
         "--random-seed", "2", "--page-size", "7"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        assert url, process.stderr.read() if process.stderr else ""
        runs, pages = list_all(session, url)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)

    assert len(runs) == 30 and [len(page["value"]) for page in pages] == [7, 7, 7, 7, 2]
    assert process.returncode == 0
