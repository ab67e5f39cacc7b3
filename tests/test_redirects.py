"""``os_destination``: only same-site relative paths (session-security.md item 18).

Unit tests of :func:`appserver.security.redirects.safe_destination`, a property test over
strings assembled from the pieces open redirects are made of, and the real login form.
(tests/test_lifecycle_html.py walks the same vectors through the form in more detail.)
"""

from __future__ import annotations

from urllib.parse import unquote, urljoin, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appserver.security.redirects import DEFAULT_DESTINATION, safe_destination

#: Item 18's vectors, with the variants browsers are known to normalise.
OFF_SITE = [
    "http://example.com",
    "https://example.com/account",
    "HTTP://example.com",
    "//example.com",
    "///example.com",
    "////example.com",
    "\\\\example.com",
    "/\\example.com",
    "\\/example.com",
    "/\\/example.com",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    # control characters before the slashes (browsers drop tabs and newlines)
    "\t//example.com",
    "\n//example.com",
    "\r\n//example.com",
    "\x00//example.com",
    "\x0b//example.com",
    "/\t/example.com",
    "/\n/example.com",
    "/\x00/example.com",
    "/\x7f/example.com",
    # their percent-encoded forms, once, twice and three times
    "http%3A%2F%2Fexample.com",
    "%2F%2Fexample.com",
    "%2f%2fexample.com",
    "/%2Fexample.com",
    "%2F%2F%2Fexample.com",
    "%5C%5Cexample.com",
    "/%5Cexample.com",
    "%5C/example.com",
    "javascript%3Aalert(1)",
    "%09//example.com",
    "/%09/example.com",
    "%0d%0a//example.com",
    "/%00/example.com",
    "%252F%252Fexample.com",
    "/%252Fexample.com",
    "%25252F%25252Fexample.com",
    # not paths at all
    "example.com",
    "fred@example.com",
    "\uff0f\uff0fexample.com",  # fullwidth solidus
    "",
    " ",
    "/" + "a" * 2048,  # absurdly long
    "\\",  # a backslash alone is not a path, even though browsers read it as one
    "\\issues",
    "%2Fissues",  # only a literal '/' starts a path
    # a backslash that comes to the front once the dot segments are resolved (the property
    # test below found "/./\\": "/%5C", which decoded reads as "//")
    "/./\\",
    "/./\\example.com",
    "/a/../\\example.com",
    "/%2e/%5cexample.com",
]

KEPT = [
    "/",
    "/issues?x=1",
    "/account",
    "/issues/DEMO-1",
    "/rest/api/2/myself?a=1&b=2",
    "/issues?jql=project%20%3D%20DEMO",
    "/a%20b",
    "/page#section",
    "/http://example.com",
]


#: Same-site paths a browser would resolve to something else: their dot segments are resolved
#: here, and no result starts with ``//`` (which a later redirect could read as a host).
RESOLVED = [
    ("/.//evil.example", "/evil.example"),
    ("/%2e//evil.example", "/evil.example"),
    ("/./../..//evil.example/x?y=1", "/evil.example/x?y=1"),
    ("/a/../b", "/b"),
    ("/a/./b/.", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/%2E%2e/account", "/account"),
    ("/issues?jql=a/./b", "/issues?jql=a/./b"),  # the query is not a path
]


@pytest.mark.parametrize("candidate, expected", RESOLVED)
def test_dot_segments_are_resolved_to_a_plain_path(candidate, expected):
    assert safe_destination(candidate) == expected


@pytest.mark.parametrize("candidate", OFF_SITE)
def test_off_site_destinations_fall_back_to_the_home_page(candidate):
    assert safe_destination(candidate) == DEFAULT_DESTINATION == "/"


@pytest.mark.parametrize("candidate", KEPT)
def test_same_site_paths_are_kept(candidate):
    assert safe_destination(candidate) == candidate


def test_nothing_given_is_the_default_and_the_default_can_be_chosen():
    assert safe_destination(None) == "/"
    assert safe_destination(None, default="/account") == "/account"
    assert safe_destination("//example.com", default="/account") == "/account"


@pytest.mark.parametrize(
    "candidate, expected",
    [
        ("/issues?q=€", "/issues?q=%E2%82%AC"),
        ("/pässe", "/p%C3%A4sse"),
        ("/a b", "/a%20b"),
        ('/x?"<>', "/x?%22%3C%3E"),
    ],
)
def test_the_result_is_a_valid_location_header(candidate, expected):
    """Header values must be Latin-1 (WSGI) and ought to be ASCII: non-ASCII is
    percent-encoded as UTF-8, which is what a browser would have sent."""
    assert safe_destination(candidate) == expected


# --- a property: whatever comes in, what goes out stays on this site ----------------------

PIECES = [
    "/",
    "//",
    "\\",
    "%2F",
    "%2f",
    "%5C",
    "%25",
    "%09",
    "%0a",
    "%00",
    ":",
    "http:",
    "https:",
    "javascript:",
    "@",
    "?",
    "#",
    ".",
    "..",
    "example.com",
    "a",
    "\t",
    "\n",
    "\r",
    "\x00",
    " ",
    "\u3002",
    "\uff0f",
    "€",
    "%E2%82%AC",
    "x=1&y=2",
]


def is_on_site(location: str) -> bool:
    base = "https://app.example/login?os_destination=x"
    joined = urlsplit(urljoin(base, location))
    return joined.scheme == "https" and joined.netloc == "app.example"


@settings(max_examples=500, deadline=None)
@given(candidate=st.lists(st.sampled_from(PIECES), max_size=8).map("".join) | st.text(max_size=30))
def test_any_destination_stays_on_this_site(candidate):
    result = safe_destination(candidate)
    assert result.isascii() and result.isprintable() and " " not in result
    assert result.startswith("/") and is_on_site(result)
    # Decoding it (as a server behind a proxy might, up to three times) reveals no other site.
    probe = result
    for _ in range(3):
        probe = unquote(probe)
        normalised = probe.replace("\\", "/")
        assert not normalised.startswith("//"), (candidate, result)
        assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in probe), (candidate, result)
        assert is_on_site(normalised)


# --- through the real login form -----------------------------------------------------------


def login(testapp, destination: str, *, forge: bool = False):
    """Log in with ``destination`` in the login link, or forged into the posted form."""
    page = testapp.get("/login", params={} if forge else {"os_destination": destination})
    form = page.forms["login-form"]
    if forge:
        form["os_destination"].force_value(destination)
    form["os_username"], form["os_password"] = "fred", "fred-password"
    return form.submit(status=303)


@pytest.mark.parametrize("forge", [False, True], ids=["in the link", "forged in the form"])
def test_the_login_form_redirects_only_on_site(testapp, users, forge):
    for candidate in (
        "//example.com",
        "/\\example.com",
        "%2F%2Fexample.com",
        "\t//example.com",
        "javascript:alert(1)",
        "https://example.com",
    ):
        assert login(testapp, candidate, forge=forge).headers["Location"] == "http://localhost/"
    assert (
        login(testapp, "/issues?x=1", forge=forge).headers["Location"]
        == "http://localhost/issues?x=1"
    )
    assert (
        login(testapp, "/issues?q=€", forge=forge).headers["Location"]
        == "http://localhost/issues?q=%E2%82%AC"
    )


def test_the_login_page_renders_only_the_safe_destination(testapp):
    page = testapp.get("/login", params={"os_destination": '//example.com/"><script>'})
    assert page.forms["login-form"]["os_destination"].value == "/"
    assert '"><script>' not in page.text
    page = testapp.get("/login", params={"os_destination": "/issues?x=1"})
    assert page.forms["login-form"]["os_destination"].value == "/issues?x=1"
