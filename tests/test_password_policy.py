"""New passwords: at least 12 characters and not easy to guess (ASVS 4.0.3 2.1.1 and 2.1.7,
NIST SP 800-63B 5.1.1.2), on every way a password is set; one set under older rules still
logs in."""
from __future__ import annotations

import base64

import pytest

import appserver
from appserver.security.password_policy import context_words, weakness
from appserver.settings import ConfigurationError

from .support import base_settings, browser_logged_in

#: 12 characters or more, and each too easy to guess for its own reason.
GUESSABLE = {
    "password1234": "This is a very common password.",  # in the lists of leaked passwords
    "zxcvbnm,./qa": "Straight rows of keys are easy to guess.",  # a keyboard row
    "abcabcabcabc": "Repeats like",  # a repeat
    "Fred Developer": "such as your name",  # fred's own display name
    "appserver2026": "such as your name or this service's",  # the service's name and a year
}


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.mark.parametrize("password, why", GUESSABLE.items(), ids=list(GUESSABLE))
def test_a_guessable_password_is_refused_with_a_reason(password, why):
    problem = weakness(password, context_words("fred", "Fred Developer", "fred@example.com"))
    assert problem is not None and problem.startswith("This password is too easy to guess. ")
    assert why in problem


def test_long_unusual_passwords_pass_and_the_estimate_can_be_switched_off():
    fred = context_words("fred", "Fred Developer", "fred@example.com")
    for password in ("fred-password", "correct horse battery staple", "pässwörd-grün", "x7#Lq0!vR2mZ"):
        assert weakness(password, fred) is None, password
    assert weakness("password1234", fred, min_score=0) is None


def test_the_account_s_words_include_its_name_address_and_the_service():
    words = context_words("fred", "Fred Developer", "fred.d@example.com")
    assert {"fred", "Fred", "Developer", "fred.d@example.com", "fred.d", "example", "appserver", "jira"} <= set(words)
    assert "" not in context_words("x")


def test_only_the_first_72_characters_are_estimated():
    """zxcvbn refuses longer input; a long password whose start is a repeat is refused."""
    assert weakness("a" * 200) is not None
    assert weakness("correct horse battery staple " * 5) is None


def _change_own(testapp, password: str, status: int):
    return testapp.put_json("/rest/api/2/myself/password", {"currentPassword": "fred-password", "password": password},
                            headers=basic("fred", "fred-password"), status=status)


def test_rest_refuses_a_common_password_in_jira_s_shape(testapp, users):
    refused = _change_own(testapp, "password1234", 400)
    assert refused.json["errorMessages"] == []
    assert refused.json["errors"]["password"].startswith("This password is too easy to guess. This is a very common")
    testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=200)  # unchanged
    own_name = _change_own(testapp, "Fred Developer", 400)
    assert "such as your name" in own_name.json["errors"]["password"]
    _change_own(testapp, "a-much-better-one", 204)
    testapp.get("/rest/api/2/myself", headers=basic("fred", "a-much-better-one"), status=200)


def test_the_account_page_says_why_a_password_was_refused(testapp, users):
    account = browser_logged_in(testapp, "fred").get("/account")
    assert "At least 12 characters, and hard to guess" in " ".join(account.html.select_one("#new-password-rule").text.split())
    assert account.html.select_one("#new_password")["minlength"] == "12"
    form = account.forms["password-form"]
    form["current_password"] = "fred-password"
    form["new_password"] = form["confirm_password"] = "zxcvbnm,./qa"
    page = form.submit(status=400)
    assert "Straight rows of keys are easy to guess." in page.html.select_one("#password-error").text


def test_an_administrator_cannot_set_a_guessable_password_either(testapp, users):
    admin = basic("admin", "admin-password")
    url = "/rest/api/2/user/password?username=fred"
    refused = testapp.put_json(url, {"password": "password1234"}, headers=admin, status=400)
    assert "too easy to guess" in refused.json["errors"]["password"]
    testapp.get("/rest/api/2/myself", headers=basic("fred", "fred-password"), status=200)


def test_a_password_set_under_older_rules_still_logs_in(testapp, users, app_request):
    """The rules are for new passwords: an account whose password is eight characters (a
    UTF-8 one, as the session-security reference has it) logs in on every channel."""
    users["fred"].password_hash = app_request.passwords.hash("pässwörd")
    app_request.dbsession.flush()
    testapp.get("/rest/api/2/myself", headers=basic("fred", "pässwörd"), status=200)
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "pässwörd"}, status=200)
    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "pässwörd"
    form.submit(status=303)


def test_the_rules_are_settings(make_app, users):
    lenient = make_app(**{"appserver.password.min_length": "8", "appserver.password.min_strength": "0"})
    lenient.put_json("/rest/api/2/myself/password", {"currentPassword": "fred-password", "password": "12345678"},
                     headers=basic("fred", "fred-password"), status=204)
    strict = make_app(**{"appserver.password.min_length": "16", "appserver.password.min_strength": "4"})
    short = strict.put_json("/rest/api/2/myself/password", {"currentPassword": "12345678", "password": "fred-password-2"},
                            headers=basic("fred", "12345678"), status=400)
    assert short.json["errors"]["password"] == "Choose a password of at least 16 characters."
    weak = strict.put_json("/rest/api/2/myself/password", {"currentPassword": "12345678", "password": "fred-developer-1"},
                           headers=basic("fred", "12345678"), status=400)
    assert "too easy to guess" in weak.json["errors"]["password"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"appserver.password.min_length": "7"}, "appserver.password.min_length: must be at least 8, got 7"),
        ({"appserver.password.min_strength": "5"}, "appserver.password.min_strength: must be at most 4, got 5"),
        ({"appserver.password.min_strength": "-1"}, "appserver.password.min_strength: must be at least 0, got -1"),
        ({"appserver.password.max_bytes": "40"}, "appserver.password.max_bytes: must be at least four times"),
    ],
)
def test_rules_that_cannot_work_stop_the_start(tmp_path, overrides, message):
    settings = {**base_settings(f"sqlite:///{tmp_path / 'unused.sqlite'}"), **overrides}
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        appserver.main({}, **settings)
