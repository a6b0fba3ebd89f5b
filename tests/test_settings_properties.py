"""Settings on classes of input (hypothesis): any text is a value or a ConfigurationError, never a crash or an echo."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from shared.errors import ConfigurationError
from shared.setting_parsers import is_loopback
from shared.settings import SETTING_NAMES, Settings
from tests.settings_cases import GOOD

EXAMPLES = settings(max_examples=150, deadline=None)
MARKER = "Z~9-marker"  # "~" is in no name, host, number or schedule, so a well-formed value never holds it
FREE_TEXT = ("WEBHOOK_SECRET", "OUTCOME_FILE", "ServiceBusConnection")  # a secret, a path, a key: any text
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=80) | st.text(max_size=40)
URL_PIECES = st.sampled_from(
    [
        "https://",
        "http://",
        "HTTPS://",
        "//",
        "[",
        "]",
        "::1",
        "127.0.0.1",
        "localhost",
        "management.azure.com",
        ":",
        "443",
        "99999",
        "0",
        "@",
        "\\",
        "/",
        "?",
        "#",
        "%2f",
        "%00",
        " ",
        "\t",
        "xn--bcher-kva.example",
        "bücher.example",
        ".",
        "-",
        "user:pw",
    ]
)


def outcome(env: dict[str, str]) -> Settings | ConfigurationError:
    """Settings.from_env's answer: the settings, or the ConfigurationError (anything else fails the test)."""
    try:
        return Settings.from_env(env)
    except ConfigurationError as error:
        return error


@pytest.mark.parametrize("name", SETTING_NAMES)
@EXAMPLES
@given(value=ANY_TEXT)
def test_any_text_is_a_value_or_a_configuration_error(name: str, value: str) -> None:
    """For every setting, arbitrary text (lone surrogates included) never raises anything else."""
    answer = outcome({**GOOD, name: value})
    if isinstance(answer, ConfigurationError):
        # A new allowlist may also refuse the policies' registry: the one rule spanning two settings.
        assert answer.settings == (name,) or (name, answer.settings) == ("ALLOWED_REGISTRIES", ("ARCHIVE_POLICIES",))


@pytest.mark.parametrize("name", SETTING_NAMES)
@EXAMPLES
@given(before=ANY_TEXT, after=ANY_TEXT)
def test_an_error_never_holds_the_value(name: str, before: str, after: str) -> None:
    """Whatever surrounds it, a value's text never reaches the error message (settings hold secrets)."""
    answer = outcome({**GOOD, name: before + MARKER + after})
    if name not in FREE_TEXT:
        assert isinstance(answer, ConfigurationError)
    if isinstance(answer, ConfigurationError):
        assert MARKER not in str(answer)


@pytest.mark.parametrize("name", ["WEBHOOK_SECRET", "ServiceBusConnection"])
def test_a_secret_setting_stays_out_of_the_settings_repr(name: str) -> None:
    """Logging the Settings object (repr or str) never prints the webhook secret or the connection string."""
    secret = {
        "WEBHOOK_SECRET": MARKER,
        "ServiceBusConnection": f"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey={MARKER}",
    }[name]
    read = Settings.from_env({**GOOD, name: secret})
    assert MARKER not in repr(read) and MARKER not in str(read)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(ANY_TEXT | st.sampled_from(["name", "registry", "filter", "isArchiveEnabled"]), children, max_size=5)
    ),
    max_leaves=20,
)
POLICY = st.fixed_dictionaries(
    {},
    optional={
        "name": st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z") | JSON,
        "registry": st.sampled_from([GOOD["ALLOWED_REGISTRIES"].split(",")[1], "myRegistry", "x/y/z"]) | JSON,
        "filter": ANY_TEXT | JSON,
        "isArchiveEnabled": st.booleans() | JSON,
    },
)


@EXAMPLES
@given(policies=st.lists(POLICY | JSON, max_size=4))
def test_any_policy_document_is_policies_or_a_configuration_error(policies: list[Any]) -> None:
    """Arbitrary JSON in the policy shape's neighbourhood parses to policies that keep the rules, or names ARCHIVE_POLICIES."""
    answer = outcome({**GOOD, "ARCHIVE_POLICIES": json.dumps(policies)})
    if isinstance(answer, ConfigurationError):
        assert answer.settings == ("ARCHIVE_POLICIES",)
        return
    names = [policy.name.lower() for policy in answer.archive_policies]
    assert len(names) == len(set(names)) == len(policies)
    for policy in answer.archive_policies:
        assert policy.registry_name.lower() in answer.allowed_registries or any(
            entry.endswith("/" + policy.registry_name.lower()) for entry in answer.allowed_registries or ()
        )
        assert isinstance(policy.is_archive_enabled, bool)
        assert policy.filter is None or 1 <= len(policy.filter) <= 1024


@EXAMPLES
@given(pieces=st.lists(URL_PIECES, min_size=1, max_size=8))
def test_an_accepted_arm_endpoint_means_one_origin_to_every_parser(pieces: list[str]) -> None:
    """An ARM_ENDPOINT that is accepted reads the same to urllib3 (which connects) and urllib.parse; https off loopback."""
    answer = outcome({"ARM_ENDPOINT": "".join(pieces)})
    if isinstance(answer, ConfigurationError):
        return
    endpoint = answer.arm_endpoint
    connects, splits = parse_url(endpoint), urlsplit(endpoint)
    assert (connects.scheme, connects.host, connects.port) == (
        splits.scheme,
        splits.netloc.rsplit(":", 1)[0] if splits.port else splits.netloc,
        splits.port,
    )
    assert connects.auth is None and connects.path in (None, "") and connects.query is None and connects.fragment is None
    assert connects.scheme == "https" or is_loopback((connects.host or "").strip("[]"))
