"""Scenario 8: a page on another origin makes the logged-in user's browser POST a form to the
app (log out, log out all other sessions). It must be refused, and the session kept.

Two attackers, both real origins on loopback:

- ``http://localhost:<other port>`` is another *site* than ``http://127.0.0.1:<app port>``:
  the browser leaves the SameSite=Lax session cookie off the cross-site POST.
- ``http://127.0.0.1:<other port>`` is another *origin* but the same *site* (ports do not
  count): the browser sends the cookie, so only the CSRF token stands in the way.
"""
from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Response, expect

from ..support import LiveServer
from .conftest import ContextFactory
from .flows import log_in, path_of, session_cookie, settings, url_path

pytestmark = pytest.mark.e2e

CSRF_MESSAGE = "This form has expired or was sent from another site."


class AttackerSite:
    """A tiny web server on another loopback port, serving the pages a test puts up."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                body = site.pages.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="attacker", daemon=True)
        self.thread.start()

    def put_up(self, path: str, body: str) -> None:
        self.pages[path] = body

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def attacker() -> Iterator[AttackerSite]:
    site = AttackerSite()
    yield site
    site.close()


def forged_form(action: str) -> str:
    """What an attacker's page does: a self-submitting form, with a made-up CSRF token."""
    return f"""<!doctype html>
<title>You won a prize</title>
<form method="post" action="{html.escape(action)}">
  <input type="hidden" name="csrf_token" value="forged-token">
</form>
<script>document.forms[0].submit();</script>
"""


@pytest.mark.parametrize("target", ["/logout", "/account/sessions/revoke-others"])
@pytest.mark.parametrize(
    "attacker_host, same_site",
    [("localhost", False), ("127.0.0.1", True)],
    ids=["cross-site", "same-site-other-port"],
)
def test_forged_form_post_is_refused_and_the_session_kept(
    new_context: ContextFactory,
    server: LiveServer,
    attacker: AttackerSite,
    attacker_host: str,
    same_site: bool,
    target: str,
) -> None:
    other_device = new_context()
    other_page = other_device.new_page()
    log_in(other_page, "fred")
    victim = new_context()
    page = victim.new_page()
    log_in(page, "fred", path="/login?os_destination=/account")
    cookie_before = session_cookie(victim, server)
    sessions_before = page.locator("#sessions tbody tr").count()
    assert sessions_before >= 2

    attack_path = f"/attack{target.replace('/', '-')}"
    attacker.put_up(attack_path, forged_form(server.url + target))
    attacker_origin = f"http://{attacker_host}:{attacker.port}"

    def is_forged_post(response: Response) -> bool:
        return response.request.method == "POST" and url_path(response.url) == target

    with page.expect_response(is_forged_post) as posted:
        page.goto(attacker_origin + attack_path)
    response = posted.value
    # The answer has come, but the page may not be its document yet (a busy renderer):
    # wait until the browser has left the attacker's page, then read where it is.
    page.wait_for_url(lambda url: not url.startswith(attacker_origin))

    sent = response.request.all_headers()
    assert sent.get("origin") == attacker_origin, sent  # it really came from the other origin
    cookie_sent = settings(server).session_cookie + "=" in sent.get("cookie", "")
    assert cookie_sent is same_site, "SameSite=Lax should decide whether the cookie goes along"
    if cookie_sent or target == "/logout":
        # Refused by the CSRF check: the forged token is not this session's.
        assert response.status == 400, (response.status, response.headers)
        assert path_of(page) == target
        expect(page.locator(".error-message")).to_have_text(
            CSRF_MESSAGE + " Go back, reload the page and try again."
        )
    else:
        # Without the cookie the POST is anonymous, and the account pages want a login: to
        # home afterwards (the form's page is another site's), saying the form was not
        # carried out, never to the POST-only address (a 405 after the login).
        assert response.status == 303, (response.status, response.headers)
        assert path_of(page) == "/login?os_destination=%2F&unsent=1"

    # Nothing happened: this browser and fred's other device are both still logged in.
    assert session_cookie(victim, server) == cookie_before
    page.goto(server.url + "/account")
    expect(page.locator("#account-username")).to_have_text("fred")
    expect(page.locator("#sessions tbody tr")).to_have_count(sessions_before)
    other_page.reload()
    expect(other_page.locator("#current-user")).to_have_text("Fred Developer (fred)")
