"""Scenario 9: a phone, 390 CSS pixels wide. Every main page fits the viewport: nothing makes
the page scroll sideways (wide tables scroll inside their own box), the header wraps so that
Log out stays on screen, and the account page's cards stack.

With ``APPSERVER_SCREENSHOTS=docs`` (``make screenshots``) it saves the phone screenshots the
README shows.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from ..support import LiveServer
from .conftest import ContextFactory, Screenshots
from .flows import log_in

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}

#: (path, who is logged in): the pages a person reaches from the header and the home page.
MAIN_PAGES = [
    ("/", None),
    ("/login", None),
    ("/login?os_destination=%2Faccount&expired=1", None),
    ("/issues", None),
    ("/issues/DEMO-1", None),
    ("/no/such/page", None),
    ("/", "admin"),
    ("/issues", "admin"),
    ("/issues?jql=project%20%3D%20DEMO%20ORDER%20BY%20updated%20DESC", "admin"),
    ("/issues/DEMO-7", "admin"),
    ("/account", "admin"),
    ("/admin/users", "admin"),
    ("/admin/users/1/revoke-sessions", "admin"),  # a confirmation page
]

#: Everything wider than the viewport, as "tag#id.class (right edge px)": what overflows and
#: by how much, so a failure names the culprit. Elements inside a box that scrolls
#: horizontally by itself (a wide table's wrapper) are fine: they do not move the page.
OVERFLOW_SCRIPT = """() => {
    const width = document.documentElement.clientWidth;
    const scrollsByItself = (element) => {
        for (let e = element.parentElement; e && e !== document.body; e = e.parentElement) {
            const style = getComputedStyle(e);
            if (["auto", "scroll"].includes(style.overflowX)) return true;
        }
        return false;
    };
    const culprits = [];
    for (const element of document.body.querySelectorAll("*")) {
        const box = element.getBoundingClientRect();
        if (box.width && (box.right > width + 0.5 || box.left < -0.5) && !scrollsByItself(element)) {
            const name = element.tagName.toLowerCase() + (element.id ? "#" + element.id : "")
                + (element.classList.length ? "." + [...element.classList].join(".") : "");
            culprits.push(`${name} (${Math.round(box.left)}..${Math.round(box.right)} px)`);
        }
    }
    return {width, scrollWidth: document.documentElement.scrollWidth, culprits};
}"""


def phone_page(new_context: ContextFactory, who: str | None) -> tuple[BrowserContext, Page]:
    context = new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    if who is not None:
        log_in(page, who)
    if who == "admin":  # administration needs the password confirmed (WebSudo)
        page.goto("/websudo?os_destination=%2F")
        page.locator("#websudo_password").fill("admin-password")
        with page.expect_navigation():
            page.locator("#websudo-submit").click()
    return context, page


def assert_fits(page: Page) -> None:
    found = page.evaluate(OVERFLOW_SCRIPT)
    assert found["width"] == PHONE["width"], found
    assert found["scrollWidth"] <= found["width"] and not found["culprits"], (
        f"{page.url} is wider than the phone ({found['width']} px): "
        f"scrollWidth {found['scrollWidth']}, {found['culprits'][:8]}"
    )


def assert_on_screen(locator: Locator) -> None:
    """Within the phone's width once scrolled to vertically: reachable without sideways
    scrolling of the page or of a table's box."""
    locator.scroll_into_view_if_needed()
    expect(locator).to_be_in_viewport()
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box


@pytest.mark.parametrize(("path", "who"), MAIN_PAGES)
def test_main_pages_fit_a_phone_without_sideways_scrolling(
    new_context: ContextFactory, server: LiveServer, path: str, who: str | None
) -> None:
    _, page = phone_page(new_context, who)
    page.goto(path)
    assert_fits(page)


def test_the_websudo_prompt_fits_a_phone(new_context: ContextFactory, server: LiveServer) -> None:
    context = new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, "admin")
    page.goto("/admin/users")  # not confirmed yet: the prompt
    expect(page.locator("#websudo_password")).to_be_visible()
    assert_fits(page)


def test_header_wraps_and_log_out_is_on_screen(
    new_context: ContextFactory, server: LiveServer, screenshots: Screenshots
) -> None:
    _, page = phone_page(new_context, "admin")
    page.goto("/issues")
    logout = page.locator("#logout")
    for element in ("#logout", "#issues-link", "#admin-link", "#current-user"):
        assert_on_screen(page.locator(element))
    # The issue table scrolls inside its own box: the page does not.
    table = page.locator("#issue-table")
    expect(table).to_be_visible()
    assert_fits(page)
    screenshots.take(page, "phone-issues")
    # Log out works from the phone.
    with page.expect_navigation():
        logout.click()
    expect(page.locator("#current-user")).to_have_text("Not logged in")


def test_account_cards_stack_on_a_phone(
    new_context: ContextFactory, server: LiveServer, screenshots: Screenshots
) -> None:
    _, page = phone_page(new_context, "fred")
    page.goto("/account")
    cards = page.locator(".columns > .card")
    expect(cards).to_have_count(2)
    first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert first is not None and second is not None
    assert second["y"] >= first["y"] + first["height"], (first, second)  # below, not beside
    assert abs(second["x"] - first["x"]) < 1, (first, second)
    assert_fits(page)
    screenshots.take(page, "phone-account")
    # The sessions table is one block per session: its Log out button is on screen.
    assert_on_screen(page.locator("#sessions button.revoke-session").first)


def test_admin_page_fits_a_phone(
    new_context: ContextFactory, server: LiveServer, screenshots: Screenshots
) -> None:
    _, page = phone_page(new_context, "admin")
    page.goto("/admin/users")
    expect(page.locator("#users")).to_be_visible()
    assert_fits(page)
    # One block per account, every action button on screen (no sideways scrolling).
    for button in page.locator("#users button").all():
        assert_on_screen(button)
    screenshots.take(page, "phone-admin")
