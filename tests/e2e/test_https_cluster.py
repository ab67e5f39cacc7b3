"""Chromium over https through ``make cluster``'s nginx (issue 13): the production cookies,
``__Host-``, Secure, HttpOnly, set and kept by a real browser that trusts the cluster's CA
through its NSS database (Chromium's certificate store on Linux) -- certificate errors are
never ignored. Remember-me logs the browser in again once the session idled out; logging out
deletes both cookies. The ``cluster`` fixture is tests/deployment_fixtures.py.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, expect
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select
from sqlalchemy.orm import Session

from appserver.models import UserSession, get_engine
from appserver.security.tokens import hash_token

from .conftest import CHROMIUM_ARGS, TIMEOUT_MS, VIEWPORT
from .flows import cookie, log_in

SESSION, REMEMBER = "__Host-appserver.session", "__Host-appserver.remember"


def launch(playwright: Playwright, executable: str, home: Path) -> Browser:
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache")}
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, env=env, headless=True)


@pytest.fixture(scope="module")
def trusting_browser(playwright: Playwright, chromium_executable: str, cluster, tmp_path_factory) -> Iterator[Browser]:
    """Chromium whose NSS database (``$HOME/.pki/nssdb``) trusts the cluster's CA."""
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.skip("trusting the CA in Chromium needs certutil (apt-get install libnss3-tools; .ci/run does)")
    home = tmp_path_factory.mktemp("chromium-trusts-ca")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, timeout=30)
    subprocess.run([certutil, "-A", "-d", f"sql:{nssdb}", "-n", "appserver cluster CA", "-t", "C,,",
                    "-i", str(cluster.ca_file)], check=True, timeout=30)
    browser = launch(playwright, chromium_executable, home)
    yield browser
    browser.close()


def open_context(browser: Browser, cluster, **options) -> BrowserContext:
    context = browser.new_context(base_url=cluster.url, viewport=VIEWPORT, **options)  # certificate errors fail
    context.set_default_timeout(TIMEOUT_MS)
    return context


def test_without_the_ca_chromium_refuses_the_certificate(playwright, chromium_executable, cluster, tmp_path):
    """The control: the trust really comes from the NSS database."""
    browser = launch(playwright, chromium_executable, tmp_path)
    try:
        page = open_context(browser, cluster).new_page()
        with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto("/status")
    finally:
        browser.close()


def test_chromium_keeps_host_secure_httponly_cookies_remember_me_and_logout(trusting_browser, cluster):
    context = open_context(trusting_browser, cluster)
    page = context.new_page()
    log_in(page, "fred", remember=True)
    for name in (SESSION, REMEMBER):
        kept = cookie(context, name)
        assert kept is not None, f"{name} was not kept"
        assert (kept["secure"], kept["httpOnly"], kept["path"], kept["sameSite"]) == (True, True, "/", "Lax")
        assert kept["domain"] == "127.0.0.1"  # host-only: __Host- forbids a Domain attribute
    assert page.evaluate("document.cookie") == "", "HttpOnly cookies are invisible to scripts"

    # The session idles out on the server (its last request two hours ago): the remember-me
    # cookie logs the browser in again, with a new session and a rotated remember-me token.
    old_session, old_remember = cookie(context, SESSION)["value"], cookie(context, REMEMBER)["value"]
    age_session(cluster.database_url, old_session, timedelta(hours=2))
    page.goto("/account")
    expect(page.locator("#account-username")).to_have_text("fred")
    assert cookie(context, SESSION)["value"] != old_session
    assert cookie(context, REMEMBER)["value"] != old_remember

    page.locator("#logout").click()
    expect(page.locator("#current-user")).to_have_text("Not logged in")
    assert cookie(context, SESSION) is None and cookie(context, REMEMBER) is None
    context.close()


def age_session(database_url: str, token: str, by: timedelta) -> None:
    engine = get_engine({"sqlalchemy.url": database_url})
    with Session(engine) as dbsession, dbsession.begin():
        row = dbsession.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
        row.last_seen_at -= by
        row.created_at -= by
    engine.dispose()
