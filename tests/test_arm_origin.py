"""The token never leaves ARM's origin (contract §3, §7): hostile polling URLs, end to end and as a property.

A corpus of polling URLs, each aimed at a second loopback server (the "attacker") through a parser
differential, an encoding, a port trick or a relative form, is served by the ARM emulator in a 201's
Azure-AsyncOperation or Location header. The client must finish the update (polling the run itself
when it refuses the URL) and the attacker must receive nothing at all, not even a connection.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from emulators import ArmEmulator
from shared.arm import ArmClient, new_session
from shared.errors import ArmError
from shared.events import ArchiveRequest
from shared.settings import Settings
from shared.urls import origin, same_origin
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, FakeTime
from tests.transport import FixedTokens, Reply, mock_session

REQUEST = ArchiveRequest(SUB, GROUP, REGISTRY, SEED_RUN, True)
TOKEN = "origin-test-token"


class Recorder:
    """A plain socket server on every loopback address (IPv4 and IPv6) of one port, recording what reaches it."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        v4 = socket.create_server(("0.0.0.0", 0))
        self.port = v4.getsockname()[1]
        self._sockets.append(v4)
        try:
            v6 = socket.socket(socket.AF_INET6)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::", self.port))
            v6.listen(16)
            self._sockets.append(v6)
        except OSError:  # no IPv6 here: IPv6 entries then cannot reach anything at all
            pass
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self._sockets]
        for thread in self._threads:
            thread.start()

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            conn.settimeout(2)
            try:
                while chunk := conn.recv(65536):
                    with self._lock:
                        self.received += chunk
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        for server in self._sockets:
            server.close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """The attacker's server, shared by the corpus; each case checks it still saw nothing."""
    server = Recorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def origin_arm() -> Iterator[ArmEmulator]:
    """An ARM emulator accepting the test's one token."""
    with ArmEmulator(token_validator=lambda token: token == TOKEN) as emulator:
        yield emulator


# {a}: ARM's host:port, {ap}: ARM's port; {e}: the attacker's 127.0.0.2:port, {p}: the attacker's port.
CORPUS: list[tuple[str, str]] = [
    ("other-loopback-address", "http://{e}"),
    ("localhost", "http://localhost:{p}"),
    ("localhost-upper", "http://LOCALHOST:{p}"),
    ("localhost-trailing-dot", "http://localhost.:{p}"),
    ("same-host-other-port", "http://127.0.0.1:{p}"),
    ("https-same-host-other-port", "https://127.0.0.1:{p}"),
    ("scheme-upper", "HTTP://{e}"),
    ("scheme-mixed-case", "hTtP://127.0.0.1:{p}"),
    ("ipv4-short", "http://127.2:{p}"),
    ("ipv4-decimal", "http://2130706434:{p}"),
    ("ipv4-hex", "http://0x7f.0.0.2:{p}"),
    ("ipv4-octal", "http://0177.0.0.2:{p}"),
    ("ipv4-zero-padded", "http://127.000.000.002:{p}"),
    ("ipv4-trailing-dot", "http://127.0.0.2.:{p}"),
    ("ipv6-loopback", "http://[::1]:{p}"),
    ("ipv6-long", "http://[0:0:0:0:0:0:0:1]:{p}"),
    ("ipv6-mapped-v4", "http://[::ffff:127.0.0.2]:{p}"),
    ("ipv6-broken-bracket", "http://[::1:{p}"),
    ("ipv6-extra-bracket", "http://[::1]]:{p}"),
    ("ipv6-zone", "http://[::1%25lo]:{p}"),
    ("backslash-userinfo-differential", "http://{e}\\@{a}"),
    ("backslash-port-differential", "http://127.0.0.2:{p}\\@127.0.0.1:{ap}"),
    ("backslash-after-host", "http://{e}\\{a}"),
    ("backslash-scheme", "http:\\\\{e}"),
    ("backslash-relative", "\\\\{e}"),
    ("slash-backslash-relative", "/\\{e}"),
    ("backslash-slash-relative", "\\/{e}"),
    ("userinfo-arm-as-user", "http://{a}@{e}"),
    ("userinfo-arm-as-password", "http://x:{a}@{e}"),
    ("userinfo-empty", "http://@{e}"),
    ("userinfo-on-arm", "http://user:pass@{a}"),
    ("userinfo-percent-at", "http://{a}%40{e}"),
    ("userinfo-double-at", "http://x@{a}@{e}"),
    ("userinfo-colon-at", "http://{a}:@{e}"),
    ("percent-encoded-colon-host", "http://127.0.0.2%3A{p}"),
    ("percent-encoded-host", "http://%31%32%37.0.0.2:{p}"),
    ("percent-slash-in-userinfo", "http://127.0.0.1%2F@{e}"),
    ("percent-slash-port", "http://{a}%2F@{e}"),
    ("double-percent", "http://127.0.0.1%252F@{e}"),
    ("percent-encoded-dot", "http://127%2E0%2E0%2E2:{p}"),
    ("fragment-at", "http://{e}#@{a}"),
    ("query-at", "http://{e}?@{a}"),
    ("semicolon-at", "http://{e};@{a}"),
    ("comma-hosts", "http://{e},{a}"),
    ("port-zero", "http://127.0.0.2:0"),
    ("port-leading-zero", "http://127.0.0.2:0{p}"),
    ("port-plus", "http://127.0.0.2:+{p}"),
    ("port-minus", "http://127.0.0.2:-{p}"),
    ("port-wraps-65536", "http://127.0.0.2:{p65536}"),
    ("port-65536", "http://{e}:65536"),
    ("port-99999", "http://127.0.0.1:99999"),
    ("port-two-colons", "http://127.0.0.2::{p}"),
    ("port-empty-then-port", "http://127.0.0.2:{p}:{ap}"),
    ("port-space", "http://127.0.0.2: {p}"),
    ("port-arm-then-attacker", "http://127.0.0.1:{ap}:{p}"),
    ("tab-in-host", "http://127.0.0.2\t:{p}"),
    ("tab-in-scheme", "ht\ttp://{e}"),
    ("leading-space", " http://{e}"),
    ("trailing-space-host", "http://{e} "),
    ("space-in-authority", "http://{a} @{e}"),
    ("nul", "http://{e}\x00"),
    ("nul-userinfo", "http://{a}\x00@{e}"),
    ("del", "http://{e}\x7f"),
    ("nel-latin1", "http://{e}\x85"),
    ("nbsp-latin1", "http://{e}\xa0"),
    ("latin1-host", "http://127.0.0.2\xe9:{p}"),
    ("protocol-relative", "//{e}"),
    ("protocol-relative-triple", "///{e}"),
    ("protocol-relative-localhost", "//localhost:{p}"),
    ("scheme-only-relative", "http:{e}"),
    ("scheme-single-slash", "http:/{e}"),
    ("https-relative", "https:{e}"),
    ("punycode-host", "http://xn--lcalhost-m2a:{p}"),
    ("punycode-label", "http://xn--localhost-:{p}"),
    ("dots-only", "http://...:{p}"),
    ("empty-host", "http://:{p}"),
    ("javascript-scheme", "javascript://{e}"),
    ("file-scheme", "file://{e}"),
    ("ftp-scheme", "ftp://{e}"),
    ("ws-scheme", "ws://{e}"),
]


def _render(template: str, arm: ArmEmulator, recorder: Recorder) -> str:
    arm_authority = arm.url.split("://", 1)[1].rstrip("/")
    return template.format(
        a=arm_authority, ap=arm_authority.rsplit(":", 1)[1], e=f"127.0.0.2:{recorder.port}", p=recorder.port, p65536=recorder.port + 65536
    )


def test_the_corpus_is_large_and_aimed_at_the_attacker() -> None:
    """At least 60 distinct hostile URLs."""
    assert len({template for _, template in CORPUS}) == len(CORPUS) >= 60


@pytest.mark.parametrize("via", ["async", "location"], ids=["azure-asyncoperation", "location"])
@pytest.mark.parametrize("template", [template for _, template in CORPUS], ids=[name for name, _ in CORPUS])
def test_a_hostile_polling_url_never_reaches_another_server(origin_arm: ArmEmulator, recorder: Recorder, template: str, via: str) -> None:
    """The attacker sees no connection and no byte; the update ends as ARM itself answers, never in a crash.

    A URL refused as foreign makes the client poll the run itself, so the update succeeds. A relative
    form that really resolves onto ARM's origin (`///host:port/…` is a path) is followed, and ARM
    answers its own 404 for the nonsense path: the token stayed home.
    """
    fake_time = FakeTime()
    settings = Settings.from_env({"ARM_ENDPOINT": origin_arm.url, "ARM_MAX_ATTEMPTS": "2"})
    client = ArmClient(new_session(), FixedTokens(TOKEN), settings, sleep=fake_time.sleep, clock=fake_time.clock)
    origin_arm.set_lro(SEED_RUN, polls=1, via=via, poll_host=_render(template, origin_arm, recorder))
    before = len(origin_arm.requests_log)
    try:
        result = client.update_run(REQUEST)
    except ArmError as error:
        assert error.status == 404 and not error.retryable
        assert origin_arm.requests_log[-1]["path"] != REQUEST.path
    else:
        assert result.http_status == 201 and result.run["properties"]["provisioningState"] == "Succeeded"
        assert all(entry["path"] == REQUEST.path for entry in origin_arm.requests_log[before:])
    assert (recorder.connections, bytes(recorder.received)) == (0, b"")


UNICODE_CORPUS = [
    ("fullwidth-dots", "http://127\uff0e0\uff0e0\uff0e2:{p}"),
    ("ideographic-dot", "http://localhost\u3002:{p}"),
    ("idn-host", "http://l\u00f6calhost:{p}"),
    ("fullwidth-digits", "http://\uff11\uff12\uff17.0.0.2:{p}"),
    ("fullwidth-colon", "http://127.0.0.2\uff1a{p}"),
    ("fullwidth-solidus", "http://{a}\uff0f@{e}"),
    ("fullwidth-at", "http://{a}\uff20{e}"),
    ("right-to-left-mark", "http://{e}\u200f"),
    ("zero-width-space", "http://127.0.0.2\u200b:{p}"),
    ("line-separator", "http://{e}\u2028"),
    ("newline", "http://{e}\n"),
    ("carriage-return-in-host", "http://127.0.0.2\r:{p}"),
    ("crlf-header-injection", "http://{a}\r\nHost: {e}"),
    ("bidi-override", "http://\u202e{e}"),
    ("surrogate", "http://{e}\ud800"),
]


@pytest.mark.parametrize("template", [template for _, template in UNICODE_CORPUS], ids=[name for name, _ in UNICODE_CORPUS])
def test_a_polling_url_no_header_could_carry_is_refused_too(template: str) -> None:
    """Characters outside latin-1 (an in-process transport can hand them over): never followed."""
    endpoint = "https://management.azure.com"
    url = template.format(a="management.azure.com", e="127.0.0.2:9", p=9)
    session, transport = mock_session(lambda request: Reply(201, {"properties": {"provisioningState": "Running"}}, {"Location": url})
                                      if request.method == "PATCH" else Reply(200, {"properties": {"provisioningState": "Succeeded"}}))
    fake_time = FakeTime()
    client = ArmClient(session, FixedTokens(TOKEN), Settings.from_env({"ARM_ENDPOINT": endpoint}), sleep=fake_time.sleep, clock=fake_time.clock)
    client.update_run(REQUEST)
    assert [str(r.url).split("?")[0] for r in transport.requests] == [endpoint + REQUEST.path] * 2
    assert not same_origin(url, endpoint)


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://management.azure.com/x?y", "https://management.azure.com"),
        ("https://MANAGEMENT.azure.com:443/x", "https://management.azure.com"),
        ("HTTPS://management.azure.com", "https://management.azure.com"),
        ("http://127.0.0.1:8080/op", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/op", "http://[::1]:8080"),
        ("http://localhost/op", "http://localhost:80"),
    ],
    ids=["plain", "host-case-default-port", "scheme-case", "loopback-port", "ipv6", "explicit-default-port"],
)
def test_urls_on_arms_own_origin_are_followed(url: str, endpoint: str) -> None:
    """Same scheme, host and port, however spelled within the strict form: same origin."""
    assert same_origin(url, endpoint)


@pytest.mark.parametrize(
    "url",
    [None, 42, "", "https://", "https:///x", "https://management.azure.com:99999", "https://[::1", "https://xn--/", "https://a..b/"],
    ids=["none", "int", "empty", "no-host", "empty-host", "port-99999", "broken-bracket", "bad-punycode", "empty-label"],
)
def test_an_unusable_url_is_not_same_origin_and_never_raises(url: Any) -> None:
    """What no parser can use is simply foreign."""
    assert origin(url) is None
    assert not same_origin(url, "https://management.azure.com")


ENDPOINTS = ["https://management.azure.com", "http://127.0.0.1:8080", "http://[::1]:9090", "https://localhost:443"]
_AUTHORITY_PIECES = st.sampled_from(
    ["management.azure.com", "127.0.0.1", "[::1]", "localhost", ":8080", ":443", ":9090", ":080", "@", "\\", "%2F", "%40", "#", "?", "/",
     ".", ":", "[", "]", "\t", " ", "\x00", "\uff0e", "xn--", "evil", "HTTPS://", "http://", "https://", "//", "%", "+", "0"]
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    url=st.one_of(
        st.lists(_AUTHORITY_PIECES, max_size=8).map("".join),
        st.tuples(st.sampled_from(["http://", "https://", "HTTP://", ""]), st.lists(_AUTHORITY_PIECES, max_size=6).map("".join),
                  st.text(max_size=12)).map("".join),
        st.text(max_size=40),
    ),
)
@example(endpoint="http://127.0.0.1:8080", url="http://evil:1\\@127.0.0.1:8080/")
@example(endpoint="https://management.azure.com", url="http://management.azure.com:443/")
def test_same_origin_implies_the_connecting_parser_agrees(endpoint: str, url: str) -> None:
    """Whenever same_origin says yes, urllib3 reads exactly the endpoint's scheme, host and port, with no userinfo."""
    if not same_origin(url, endpoint):
        return
    connected, expected = parse_url(url), parse_url(endpoint)
    default = {"http": 80, "https": 443}
    assert connected.auth is None and "\\" not in url and url.isascii() and url.isprintable()
    assert connected.scheme == expected.scheme
    assert (connected.host or "").lower() == (expected.host or "").lower()
    assert (connected.port or default[connected.scheme]) == (expected.port or default[expected.scheme])


@pytest.mark.parametrize(
    ("reference", "followed"),
    [
        ("/operations/1?api-version=2019-04-01", "https://management.azure.com/operations/1?api-version=2019-04-01"),
        ("https://management.azure.com/operations/1", "https://management.azure.com/operations/1"),
        ("https://management.azure.com/op\t/1", None),
        ("https://management.azure.com:4\t43/op", None),
        ("\thttps://management.azure.com/op", None),
        ("https://management.azure.com/op\n", None),
        ("https://management.azure.com/op ", None),
        ("//management.azure.com/op", "https://management.azure.com/op"),
        ("//evil.example/op", None),
        ("https://[::1/op", None),
    ],
    ids=["relative-path", "absolute", "tab-in-path", "tab-splitting-port", "leading-tab", "trailing-newline", "trailing-space",
         "protocol-relative-home", "protocol-relative-away", "broken-bracket"],
)
def test_a_reference_is_judged_before_urljoin_drops_its_tabs(reference: str, followed: str | None) -> None:
    """follow() refuses whitespace in the raw header, which urljoin would silently remove."""
    from shared.urls import follow

    assert follow(reference, "https://management.azure.com/subscriptions/s/runs/r?api-version=2019-04-01", "https://management.azure.com") == followed
