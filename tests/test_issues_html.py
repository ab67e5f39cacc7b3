"""The issue tracker's HTML pages (WebTest): /issues and /issues/{key}."""
from __future__ import annotations

import pytest
import webtest
from sqlalchemy import select

from appserver.demo import demo_issue_fields, seed_demo
from appserver.models import Issue

NOT_FOUND = "Issue does not exist or you do not have permission to see it."


@pytest.fixture
def demo(app_request):
    for _ in seed_demo(app_request):
        pass
    app_request.dbsession.flush()


@pytest.fixture
def fred_browser(testapp, demo):
    """testapp logged in as fred through the login form (a session cookie)."""
    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form.submit(status=303)
    return testapp


def rows(page) -> list[str]:
    return [row["data-key"] for row in page.html.select("#issue-table tr.issue-row")]


def test_anonymous_list_shows_the_public_issues_and_a_hint(testapp, demo):
    page = testapp.get("/issues")
    assert page.html.select_one("#issue-count").text == "5"
    assert rows(page) == ["DEMO-1", "DEMO-41", "DEMO-81", "DEMO-121", "DEMO-161"]
    hint = page.html.select_one("#anonymous-hint")
    assert "Log in" in hint.text and "os_destination=%2Fissues" in str(hint)
    assert "anonymously" in page.html.select_one("#issue-viewer").text
    assert page.html.select_one("#next-page") is None and page.html.select_one("#prev-page") is None


def test_logged_in_list_is_paginated(fred_browser):
    first = fred_browser.get("/issues")
    assert first.html.select_one("#issue-count").text == "200"
    assert "fred" in first.html.select_one("#issue-viewer").text
    assert first.html.select_one("#anonymous-hint") is None
    assert rows(first) == [f"DEMO-{n}" for n in range(1, 51)]
    assert first.html.select_one("#prev-page") is None
    assert first.html.select_one(".pagination #page-info").text == "Page 1 of 4"

    second = first.click(linkid="next-page")
    assert rows(second) == [f"DEMO-{n}" for n in range(51, 101)]
    assert second.html.select_one("#prev-page") and second.html.select_one("#next-page")

    last = fred_browser.get("/issues?page=4")
    assert rows(last) == [f"DEMO-{n}" for n in range(151, 201)]
    assert last.html.select_one("#next-page") is None
    assert last.click(linkid="prev-page").html.select_one("#page-info").text == "Page 3 of 4"


def test_a_page_past_the_end_shows_the_last_page(fred_browser, testapp):
    """Fewer issues than when the link was made (an old bookmark; a session that expired on
    page 2 leaves the public issues only): the last page, not "showing 51-50, page 2 of 1"."""
    page = fred_browser.get("/issues?page=9")
    assert rows(page) == [f"DEMO-{n}" for n in range(151, 201)]
    assert page.html.select_one("#page-info").text == "Page 4 of 4"
    assert "showing 151–200" in page.text and page.html.select_one("#next-page") is None
    anonymous = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ).get("/issues?page=2")
    assert anonymous.html.select_one("#page-info").text == "Page 1 of 1"
    assert "showing 1–5" in anonymous.text


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "9999999", "\u00b2", "\u0663"])
def test_bad_page_numbers_are_400_pages(testapp, demo, value):
    page = testapp.get("/issues", {"page": value}, status=400)
    assert "text/html" in page.content_type and "page number" in page.text


def test_jql_filter_on_the_page_keeps_it_across_pages(fred_browser):
    page = fred_browser.get("/issues", {"jql": "status = Open ORDER BY key DESC"})
    expected = [f"DEMO-{n}" for n in range(200, 0, -1) if demo_issue_fields(n)["status"] == "Open"]
    assert page.html.select_one("#issue-count").text == str(len(expected))
    assert rows(page) == expected[:50]
    assert page.html.select_one("#jql")["value"] == "status = Open ORDER BY key DESC"
    following = page.click(linkid="next-page")
    assert rows(following) == expected[50:100]


def test_bad_jql_on_the_page_is_a_400_with_the_message(testapp, demo):
    page = testapp.get("/issues", {"jql": "status = Open OR status = Closed"}, status=400)
    assert "'OR' is not supported" in page.html.select_one("#jql-error").text
    assert page.html.select_one("#issue-table") is None
    page = testapp.get("/issues", {"jql": "project = NOPE"}, status=400)
    assert "does not exist for the field 'project'" in page.html.select_one("#jql-error").text


def test_issue_page(fred_browser):
    page = fred_browser.get("/issues/DEMO-7")
    seeded = demo_issue_fields(7)
    assert page.html.select_one("#issue-key").text == "DEMO-7"
    assert page.html.select_one("#issue-summary").text == seeded["summary"]
    assert seeded["status"] in page.html.select_one("#issue-status").text
    assert page.html.select_one("#issue-description").text == seeded["description"]
    assert page.html.select_one("#issue-security").text == "Logged-in users"
    assert fred_browser.get("/issues/demo-7").html.select_one("#issue-key").text == "DEMO-7"


def test_list_links_to_issue_pages(testapp, demo):
    page = testapp.get("/issues").click("DEMO-41")
    assert page.html.select_one("#issue-key").text == "DEMO-41"
    assert page.html.select_one("#issue-security").text == "Public"


@pytest.mark.parametrize("key", ["DEMO-7", "DEMO-999", "NOPE-1", "not a key", "%C2%B2"])
def test_hidden_and_missing_issues_are_the_same_404_for_anonymous_visitors(testapp, demo, key):
    """No redirect to log in for hidden issues only: that would reveal which keys exist. Every
    404 offers the log-in link instead, returning to the issue."""
    page = testapp.get(f"/issues/{key}", status=404)
    assert NOT_FOUND in page.text
    login = page.html.select_one(".actions a[href^='/login']")
    assert login is not None and "os_destination=%2Fissues%2F" in login["href"]


def test_missing_issue_for_logged_in_users_offers_no_login(fred_browser):
    page = fred_browser.get("/issues/DEMO-999", status=404)
    assert NOT_FOUND in page.text
    assert page.html.select_one(".actions a[href^='/login']") is None


def test_page_content_is_escaped(fred_browser, app_request):
    issue = app_request.dbsession.scalar(select(Issue).where(Issue.key == "DEMO-9"))
    issue.summary = "<script>alert(1)</script>"
    app_request.dbsession.flush()
    for url in ("/issues/DEMO-9", "/issues"):
        page = fred_browser.get(url)
        assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text


def test_nav_and_home_link_to_the_issues(testapp, demo):
    home = testapp.get("/")
    assert home.html.select_one("#issues-link")["href"] == "/issues"
    assert home.click(linkid="issues-link").html.select_one("#issue-count").text == "5"
