"""The Jira REST surface of the demo issue tracker (WebTest): search (GET and POST), single
issues, the field list; visibility from the policy, pagination, the cap, 400s and 404s."""
from __future__ import annotations

import base64
import re

import pytest
from pyramid.authorization import Allow, Everyone

from appserver import jql
from appserver.demo import DEMO_ISSUE_COUNT, demo_issue_fields, seed_demo
from appserver.models.issue import SECURITY_LEVELS, SecurityLevel
from appserver.security.login import find_user
from appserver.views.rest.issues import FIELDS, MAX_RESULTS

PUBLIC_KEYS = ["DEMO-1", "DEMO-41", "DEMO-81", "DEMO-121", "DEMO-161"]
NOT_FOUND = "Issue does not exist or you do not have permission to see it."


def basic(username: str, password: str | None = None) -> dict[str, str]:
    raw = f"{username}:{password or username + '-password'}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


FRED = basic("fred")


@pytest.fixture
def demo(app_request):
    """The demo data (users fred/alice/admin and project DEMO) inside the test's transaction."""
    for _ in seed_demo(app_request):
        pass
    app_request.dbsession.flush()


def search(testapp, status=200, headers=None, **params):
    return testapp.get("/rest/api/2/search", params, headers=headers or {}, status=status)


def keys(response) -> list[str]:
    return [issue["key"] for issue in response.json["issues"]]


def assert_jira_error(response, fragment: str) -> None:
    assert response.content_type == "application/json"
    assert set(response.json) == {"errorMessages", "errors"}
    text = " ".join(response.json["errorMessages"]) + " ".join(response.json["errors"].values())
    assert fragment in text, text


def expected_keys(predicate, *, public_only: bool = False) -> list[str]:
    """Keys of the demo issues a predicate on their seeded fields selects, in key order."""
    found = []
    for number in range(1, DEMO_ISSUE_COUNT + 1):
        fields = demo_issue_fields(number)
        if public_only and fields["security_level"] != "public":
            continue
        if predicate(fields):
            found.append(f"DEMO-{number}")
    return found


# --- visibility -----------------------------------------------------------------------------


def test_anonymous_search_sees_only_the_public_issues(testapp, demo):
    response = search(testapp, jql="project = DEMO ORDER BY key")
    assert response.json["total"] == 5
    assert keys(response) == PUBLIC_KEYS
    assert all(issue["fields"]["security"] is None for issue in response.json["issues"])


@pytest.mark.parametrize("user", ["fred", "admin"])
def test_logged_in_search_sees_all_issues(testapp, demo, user):
    response = search(testapp, headers=basic(user), jql="project = DEMO", maxResults="100")
    assert response.json["total"] == DEMO_ISSUE_COUNT
    hidden = [i for i in response.json["issues"] if i["key"] not in PUBLIC_KEYS]
    assert hidden[0]["fields"]["security"]["name"] == "Logged-in users"


def test_cookie_session_search_sees_all_and_a_stale_cookie_is_a_401_not_the_public_subset(
    testapp, demo, app_request
):
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"})
    assert search(testapp, jql="project = DEMO").json["total"] == 200
    app_request.session_store.revoke_user_sessions(find_user(app_request, "fred").id)
    app_request.dbsession.flush()
    response = search(testapp, status=401, jql="project = DEMO")
    assert_jira_error(response, "session has expired")
    # the stale cookie is kept: the same client is refused again, never given the 5 public
    # issues in silence, until it logs in again
    assert_jira_error(search(testapp, status=401, jql="project = DEMO"), "session has expired")
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"})
    assert search(testapp, jql="project = DEMO").json["total"] == 200


def test_visibility_follows_the_security_levels_acl_not_the_view(testapp, demo, monkeypatch):
    """Open the "users" level to everyone in its ACL only: anonymous searches and issue pages
    follow, which shows the views ask the policy instead of checking for a user."""
    opened = SecurityLevel("users", "10000", "Logged-in users", "", ((Allow, Everyone, "view"),))
    monkeypatch.setitem(SECURITY_LEVELS, "users", opened)
    assert search(testapp, jql="project = DEMO").json["total"] == 200
    assert testapp.get("/rest/api/2/issue/DEMO-7").json["key"] == "DEMO-7"
    monkeypatch.setitem(SECURITY_LEVELS, "public", SecurityLevel("public", None, "", "", ()))
    assert search(testapp, jql="project = DEMO").json["total"] == 195
    testapp.get("/rest/api/2/issue/DEMO-41", status=404)


# --- pagination and the cap -----------------------------------------------------------------


def test_default_page_size_is_50(testapp, demo):
    response = search(testapp, headers=FRED, jql="ORDER BY key")
    assert (response.json["startAt"], response.json["maxResults"]) == (0, 50)
    assert len(response.json["issues"]) == 50


def test_max_results_over_the_cap_is_capped_and_says_so(testapp, demo):
    response = search(testapp, headers=FRED, jql="", maxResults="1000")
    assert response.json["maxResults"] == MAX_RESULTS == 100
    assert len(response.json["issues"]) == 100
    assert response.json["total"] == 200


def test_pages_are_disjoint_and_cover_everything(testapp, demo):
    seen = []
    for start in range(0, 200, 30):
        seen += keys(search(testapp, headers=FRED, jql="ORDER BY updated DESC",
                            startAt=str(start), maxResults="30"))
    assert len(seen) == len(set(seen)) == 200


def test_last_page_and_beyond(testapp, demo):
    response = search(testapp, headers=FRED, jql="ORDER BY key", startAt="190", maxResults="50")
    assert keys(response) == [f"DEMO-{n}" for n in range(191, 201)]
    beyond = search(testapp, headers=FRED, startAt="500")
    assert beyond.json["issues"] == [] and beyond.json["total"] == 200


def test_list_parameters_given_twice_both_count(testapp, demo):
    """``fields`` and ``expand`` are lists, as Jira reads them: a second one adds to the
    first (a one-value parameter given twice is a 400, test_hostile_input)."""
    response = testapp.get("/rest/api/2/search?fields=summary&fields=status&maxResults=1", headers=FRED)
    assert response.json["issues"][0]["fields"].keys() == {"summary", "status"}


def test_max_results_zero_counts_without_issues(testapp, demo):
    response = search(testapp, headers=FRED, maxResults="0")
    assert response.json["issues"] == [] and response.json["total"] == 200


@pytest.mark.parametrize(
    "params, name",
    [
        ({"startAt": "-1"}, "startAt"),
        ({"startAt": "1.5"}, "startAt"),
        ({"startAt": "ten"}, "startAt"),
        ({"maxResults": "abc"}, "maxResults"),
        ({"maxResults": "-5"}, "maxResults"),
        ({"maxResults": "9" * 40}, "maxResults"),
        ({"startAt": "\u00b2"}, "startAt"),  # a digit to str.isdigit, not to int()
        ({"maxResults": "\u0663"}, "maxResults"),
        ({"validateQuery": "maybe"}, "validateQuery"),
    ],
)
def test_bad_parameter_values_are_400_in_jiras_shape(testapp, demo, params, name):
    response = search(testapp, status=400, **params)
    assert_jira_error(response, name)
    assert name in response.json["errors"]


# --- JQL ------------------------------------------------------------------------------------


def test_key_order_is_numeric(testapp, demo):
    response = search(testapp, headers=FRED, jql="project = DEMO ORDER BY key", maxResults="12")
    assert keys(response) == [f"DEMO-{n}" for n in range(1, 13)]
    response = search(testapp, headers=FRED, jql="project = DEMO ORDER BY key DESC", maxResults="3")
    assert keys(response) == ["DEMO-200", "DEMO-199", "DEMO-198"]


def test_no_order_by_means_key_order(testapp, demo):
    assert keys(search(testapp, headers=FRED, maxResults="3")) == ["DEMO-1", "DEMO-2", "DEMO-3"]


@pytest.mark.parametrize("field", ["created", "updated"])
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_order_by_time(testapp, demo, field, direction):
    response = search(testapp, headers=FRED, jql=f"ORDER BY {field} {direction}", maxResults="100")
    times = [issue["fields"][field] for issue in response.json["issues"]]
    # Jira times are all +0000 here, so the strings sort like the instants they denote
    assert times == sorted(times, reverse=direction == "DESC")


def test_created_and_updated_orders_differ(testapp, demo):
    by_created = keys(search(testapp, headers=FRED, jql="ORDER BY created", maxResults="100"))
    by_updated = keys(search(testapp, headers=FRED, jql="ORDER BY updated", maxResults="100"))
    assert by_created != by_updated


@pytest.mark.parametrize("value", ['"In Progress"', '"in progress"', "3"])
def test_status_search(testapp, demo, value):
    response = search(testapp, headers=FRED, jql=f"status = {value} ORDER BY key", maxResults="100")
    expected = expected_keys(lambda f: f["status"] == "In Progress")
    assert 0 < response.json["total"] == len(expected) < 200
    assert keys(response) == expected[:100]


def has_word(text: str, word: str) -> bool:
    """JQL's ``~`` here: a word of ``text`` starts with ``word``, in any case."""
    return re.search(r"(^|\W)" + re.escape(word), text, re.IGNORECASE) is not None


def test_text_search_matches_every_word_in_summary_or_description(testapp, demo):
    response = search(testapp, headers=FRED, jql='text ~ "session cookie" ORDER BY key', maxResults="100")

    def has_words(fields) -> bool:
        text = fields["summary"] + " " + fields["description"]
        return has_word(text, "session") and has_word(text, "cookie")

    expected = expected_keys(has_words)
    assert 0 < len(expected) < 200
    assert keys(response) == expected


def test_summary_search_and_combined_clauses(testapp, demo):
    jql_text = 'project = DEMO AND summary ~ "login form" AND status = Open ORDER BY key'
    response = search(testapp, headers=FRED, jql=jql_text, maxResults="100")
    expected = expected_keys(
        lambda f: has_word(f["summary"], "login") and has_word(f["summary"], "form") and f["status"] == "Open"
    )
    assert expected and keys(response) == expected


@pytest.mark.parametrize("word", ["in", "port", "PORT", "sess"])
def test_text_search_matches_words_not_parts_of_words(testapp, demo, word):
    """"in" finds "in", not "behind" or "pagination"; "sess" finds "session" (the start of a
    word, as Jira's stemmed words reach "sessions" from "session")."""
    response = search(testapp, headers=FRED, jql=f'summary ~ "{word}" ORDER BY key', maxResults="100")
    words = expected_keys(lambda f: has_word(f["summary"], word))
    parts = expected_keys(lambda f: word.lower() in f["summary"].lower())
    assert keys(response) == words[:100] and response.json["total"] == len(words)
    if word.lower() in ("in", "port"):
        assert len(words) < len(parts)  # the demo has words that only contain these


@pytest.mark.parametrize("word, found", [
    ("ılık", True), ("ILIK", False), ("Ilik", False), ("istanbul", True), ("ISTANBUL", True),
    ("cafe\u0301", True), ("café", True), ("cafe", False), ("हिन्दी", True),
])
def test_text_search_reads_unicode_alike_on_both_databases(testapp, demo, dbsession, word, found):
    """Both databases answer alike (an outside review: "ı" found 200 issues on SQLite, 58 on
    PostgreSQL): case is spelled out as the letter's own one-character forms, not left to
    each engine's case folding (Python's matched "I" with "ı", PostgreSQL's did not). A
    decomposed accent is the composed one (NFC) and part of its word, not a word break."""
    from sqlalchemy import select

    from appserver.models.issue import Issue

    issue = dbsession.scalar(select(Issue).where(Issue.project_key == "DEMO", Issue.number == 7))
    issue.summary = "ılık Istanbul café हिन्दी"
    dbsession.flush()
    response = search(testapp, headers=FRED, jql=f'summary ~ "{word}"', maxResults="100")
    assert ("DEMO-7" in keys(response)) is found


def test_text_search_treats_like_wildcards_literally(testapp, demo):
    # unescaped, LIKE's "_" would match the space in "demo issue 1..."
    assert search(testapp, headers=FRED, jql='text ~ "issue 17"').json["total"] > 0
    assert search(testapp, headers=FRED, jql='text ~ "issue_17"').json["total"] == 0


def test_anonymous_text_search_sees_only_public_matches(testapp, demo):
    response = search(testapp, jql='text ~ "the" ORDER BY key')
    assert keys(response) == expected_keys(
        lambda f: has_word(f["summary"] + " " + f["description"], "the"), public_only=True
    )


@pytest.mark.parametrize("value", ["DEMO-7", "demo-7", '"DEMO-7"'])
def test_key_search(testapp, demo, value):
    assert keys(search(testapp, headers=FRED, jql=f"key = {value}")) == ["DEMO-7"]
    assert keys(search(testapp, headers=FRED, jql=f"issuekey = {value}")) == ["DEMO-7"]


def test_a_hidden_issue_does_not_exist_for_who_may_not_see_it_as_in_jira(testapp, demo):
    """Jira's answer for a key that names no issue, and for one the caller may not see: the
    same words, so a search tells nothing of hidden issues."""
    missing = "An issue with key 'DEMO-7' does not exist for field 'key'."
    assert_jira_error(search(testapp, status=400, jql="key = DEMO-7"), missing)
    assert_jira_error(search(testapp, status=400, jql="key = DEMO-99999"),
                      "An issue with key 'DEMO-99999' does not exist for field 'key'.")
    assert search(testapp, jql="key = DEMO-7", validateQuery="false").json["total"] == 0
    assert keys(search(testapp, jql="key = DEMO-41")) == ["DEMO-41"]
    assert keys(search(testapp, headers=FRED, jql="key = DEMO-7")) == ["DEMO-7"]


@pytest.mark.parametrize(
    "jql_text, fragment",
    [
        ("status = Open OR status = Closed", "'OR' is not supported"),
        ("assignee = fred", "Field 'assignee' does not exist or is not supported"),
        ("project = DEMO ORDER BY priority", "Ordering by 'priority' is not supported"),
        ("status != Open", "The operator '!=' is not supported"),
        ("project = ", "Expecting a value"),
        ('project = "DE\x00MO"', "control character"),  # PostgreSQL refuses NUL: never a 500
        ('project = "\\ud800"', "half of a UTF-16 surrogate pair"),  # no encoder takes it: never a 500
        ("text ~ \\ude00x", "half of a UTF-16 surrogate pair"),
    ],
)
def test_unsupported_jql_is_400_naming_what_is_unsupported(testapp, demo, jql_text, fragment):
    assert_jira_error(search(testapp, status=400, jql=jql_text), fragment)
    assert_jira_error(
        testapp.post_json("/rest/api/2/search", {"jql": jql_text}, status=400), fragment
    )


def test_escapes_reach_the_database_as_the_characters_they_stand_for(testapp, demo):
    """A surrogate pair is one character (an emoji, as Java and JSON write it), and an escape
    outside quotes is read as inside them: never a 500, never a silently different query."""
    for jql_text in (r"project = '\ud83d\ude00'", r'text ~ "\ud83d\ude00"'):
        assert search(testapp, headers=FRED, jql=jql_text, validateQuery="false").json["total"] == 0
    assert_jira_error(search(testapp, status=400, headers=FRED, jql=r"project = '\ud83d\ude00'"),
                      "The value '\U0001f600' does not exist")
    assert_jira_error(search(testapp, status=400, jql=r'project = "\ud800"', validateQuery="false"), "surrogate")
    assert search(testapp, headers=FRED, jql=r"project = DE\u004dO").json["total"] == 200
    spelled = search(testapp, headers=FRED, jql=r"key = DEMO\u002d7")
    assert keys(spelled) == ["DEMO-7"]


@pytest.mark.parametrize(
    "jql_text, message",
    [
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("status = Sleeping", "The value 'Sleeping' does not exist for the field 'status'."),
        ("key = nonsense", "The issue key 'nonsense' for field 'key' is invalid."),
        ("key = \u00b2", "The issue key '\u00b2' for field 'key' is invalid."),
        ("key = DEMO-99999", "An issue with key 'DEMO-99999' does not exist for field 'key'."),
        ("project = \u00b2", "The value '\u00b2' does not exist for the field 'project'."),
        ('text ~ "!!"', "contains no words"),
    ],
)
def test_validate_query(testapp, demo, jql_text, message):
    assert_jira_error(search(testapp, status=400, headers=FRED, jql=jql_text), message)
    assert_jira_error(
        search(testapp, status=400, headers=FRED, jql=jql_text, validateQuery="strict"), message
    )
    quiet = search(testapp, headers=FRED, jql=jql_text, validateQuery="false")
    assert quiet.json["total"] == 0 and "warningMessages" not in quiet.json
    warned = search(testapp, headers=FRED, jql=jql_text, validateQuery="warn")
    assert warned.json["total"] == 0
    assert any(message in warning for warning in warned.json["warningMessages"])


def test_project_by_name_or_id_and_case_insensitive(testapp, demo):
    for value in ("demo", '"Demo project"'):
        assert search(testapp, headers=FRED, jql=f"project = {value}").json["total"] == 200


def test_search_queries_do_not_grow_with_the_page(testapp, demo, count_statements):
    search(testapp, headers=FRED, jql="project = DEMO", maxResults="1")
    count_statements.reset()
    search(testapp, headers=FRED, jql="project = DEMO", maxResults="1")
    small = len(count_statements)
    count_statements.reset()
    search(testapp, headers=FRED, jql="project = DEMO", maxResults="100")
    # Basic: the user; then the project check, the count and the page (with project and
    # reporter joined): nothing per issue
    assert len(count_statements) == small == 4, count_statements.statements


# --- POST /search ---------------------------------------------------------------------------


def test_post_search_matches_get(testapp, demo):
    body = {"jql": "project = DEMO ORDER BY key DESC", "startAt": 10, "maxResults": 20,
            "fields": ["summary", "status"], "validateQuery": True, "expand": None}
    posted = testapp.post_json("/rest/api/2/search", body, headers=FRED)
    got = search(testapp, headers=FRED, jql=body["jql"], startAt="10", maxResults="20",
                 fields="summary,status")
    assert posted.json == got.json
    assert keys(posted)[0] == "DEMO-190"
    assert set(posted.json["issues"][0]["fields"]) == {"summary", "status"}


def test_post_search_caps_and_accepts_jira_client_bodies(testapp, demo):
    body = {"jql": "", "startAt": 0, "validateQuery": "true", "fields": ["*all"],
            "expand": "names", "maxResults": 500}
    response = testapp.post_json("/rest/api/latest/search", body, headers=FRED)
    assert response.json["maxResults"] == 100 and response.json["names"]["summary"] == "Summary"


@pytest.mark.parametrize(
    "body, name",
    [
        ({"startAt": -1}, "startAt"),
        ({"startAt": "x"}, "startAt"),
        ({"maxResults": True}, "maxResults"),
        ({"maxResults": 1.5}, "maxResults"),
        ({"jql": 7}, "jql"),
        ({"fields": [1, 2]}, "fields"),
        ({"validateQuery": "perhaps"}, "validateQuery"),
        ({"jql": "", "colour": "blue"}, "colour"),
    ],
)
def test_post_search_bad_bodies_are_400(testapp, demo, body, name):
    response = testapp.post_json("/rest/api/2/search", body, status=400)
    assert name in response.json["errors"]


def test_post_search_needs_a_json_object(testapp, demo):
    response = testapp.post(
        "/rest/api/2/search", "jql=x", headers={"X-Atlassian-Token": "no-check"},
        content_type="application/x-www-form-urlencoded", status=415,
    )
    assert_jira_error(response, "JSON")
    response = testapp.post("/rest/api/2/search", "[1]", content_type="application/json", status=400)
    assert_jira_error(response, "JSON object")


# --- fields and expand ----------------------------------------------------------------------


def test_issue_json_shape(testapp, demo):
    issue = search(testapp, headers=FRED, jql="key = DEMO-7").json["issues"][0]
    assert issue["id"].isdigit() and issue["key"] == "DEMO-7"
    assert issue["self"].endswith(f"/rest/api/2/issue/{issue['id']}")
    fields = issue["fields"]
    seeded = demo_issue_fields(7)
    assert fields["summary"] == seeded["summary"]
    assert fields["description"] == seeded["description"]
    assert fields["status"]["name"] == seeded["status"]
    assert fields["status"]["statusCategory"]["key"] in {"new", "indeterminate", "done"}
    assert fields["reporter"]["name"] == seeded["reporter"]
    assert "emailAddress" not in fields["reporter"]
    assert fields["assignee"] is None  # no issue is assigned: Jira's null, not a missing field
    project_id = fields["project"]["id"]
    assert fields["project"] == {"self": f"http://localhost/rest/api/2/project/{project_id}", "id": project_id,
                                 "key": "DEMO", "name": "Demo project", "projectTypeKey": "software"}
    assert fields["issuetype"]["name"] == "Task"
    for name in ("created", "updated"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", fields[name])
    assert fields["created"] == seeded["created_at"].strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"fields": "summary,status"}, {"summary", "status"}),
        ({"fields": ["summary", "status"]}, {"summary", "status"}),
        ({"fields": "*all,-description,-security"}, {f.id for f in FIELDS} - {"issuekey", "description", "security"}),
        ({"fields": "*navigable"}, {f.id for f in FIELDS if f.navigable} - {"issuekey"}),
        ({"fields": "summary,nosuchfield,issuekey"}, {"summary"}),
        ({}, {f.id for f in FIELDS if f.navigable} - {"issuekey"}),
        # Exclusions alone leave them out of the default (Jira's "-description"): it was {}.
        ({"fields": "-description"}, {f.id for f in FIELDS if f.navigable} - {"issuekey", "description"}),
        ({"fields": "-description,-status"}, {f.id for f in FIELDS if f.navigable} - {"issuekey", "description", "status"}),
    ],
)
def test_fields_selection(testapp, demo, params, expected):
    response = search(testapp, headers=FRED, jql="key = DEMO-7", **params)
    assert set(response.json["issues"][0]["fields"]) == expected


def test_expand_names_and_schema(testapp, demo):
    response = search(testapp, headers=FRED, jql="key = DEMO-7", fields="summary,created",
                      expand="names,schema")
    assert response.json["names"] == {"summary": "Summary", "created": "Created"}
    assert response.json["schema"]["created"] == {"type": "datetime", "system": "created"}


def test_latest_is_accepted(testapp, demo):
    assert testapp.get("/rest/api/latest/search", headers=FRED).json["total"] == 200
    assert testapp.get("/rest/api/latest/issue/DEMO-7", headers=FRED).json["key"] == "DEMO-7"
    assert testapp.get("/rest/api/latest/field").json


# --- GET /issue/{idOrKey} -------------------------------------------------------------------


def test_get_issue_by_key_and_id(testapp, demo):
    by_key = testapp.get("/rest/api/2/issue/DEMO-7", headers=FRED).json
    assert by_key["fields"]["summary"] == demo_issue_fields(7)["summary"]
    assert testapp.get(f"/rest/api/2/issue/{by_key['id']}", headers=FRED).json == by_key
    assert testapp.get("/rest/api/2/issue/demo-7", headers=FRED).json == by_key
    assert set(by_key["fields"]) == {f.id for f in FIELDS} - {"issuekey"}  # default *all


def test_get_issue_without_a_field_starts_from_all_of_them(testapp, demo):
    issue = testapp.get("/rest/api/2/issue/DEMO-7", {"fields": "-description"}, headers=FRED).json
    assert set(issue["fields"]) == {f.id for f in FIELDS} - {"issuekey", "description"}


def test_an_issue_advertises_only_the_expansions_it_delivers(testapp, demo):
    issue = testapp.get("/rest/api/2/issue/DEMO-7", {"expand": "names,schema"}, headers=FRED).json
    for name in issue["expand"].split(","):
        assert name in issue, name


def test_nested_status_project_and_type_link_to_resources_that_answer(testapp, demo):
    """Jira nests them with a ``self`` link, which clients follow (and by which the jira
    library knows what they are)."""
    fields = testapp.get("/rest/api/2/issue/DEMO-41").json["fields"]  # public: anonymous too
    for name in ("status", "project", "issuetype"):
        nested = fields[name]
        linked = testapp.get(nested["self"].replace("http://localhost", "")).json
        assert {key: linked[key] for key in nested} == nested, name
    assert fields["project"]["self"].endswith(f"/rest/api/2/project/{fields['project']['id']}")
    assert fields["status"]["self"].endswith(f"/rest/api/2/status/{fields['status']['id']}")
    assert fields["issuetype"]["self"].endswith("/rest/api/2/issuetype/3")


def test_projects_statuses_and_issue_types(testapp, demo):
    projects = testapp.get("/rest/api/2/project").json
    assert [p["key"] for p in projects] == ["DEMO"]
    demo_project = testapp.get("/rest/api/latest/project/demo").json  # by key, any case
    assert demo_project["key"] == "DEMO" and demo_project["issueTypes"][0]["name"] == "Task"
    assert testapp.get(f"/rest/api/2/project/{demo_project['id']}").json == demo_project
    assert [s["name"] for s in testapp.get("/rest/api/2/status").json] == ["Open", "In Progress", "Resolved", "Closed"]
    assert testapp.get("/rest/api/2/status/in progress").json["id"] == "3"
    assert [t["name"] for t in testapp.get("/rest/api/2/issuetype").json] == ["Task"]


@pytest.mark.parametrize(("path", "message"), [
    ("/rest/api/2/project/NOPE", "No project could be found with key 'NOPE'."),
    ("/rest/api/2/project/99999", "No project could be found with id '99999'."),
    ("/rest/api/2/project/99999999999999999999", "No project could be found with id"),  # over INTEGER
    ("/rest/api/2/project/A%00B", "No project could be found with key"),  # NUL: PostgreSQL would refuse it
    ("/rest/api/2/status/99", "The status with id '99' does not exist"),
    ("/rest/api/2/issuetype/1", "The issue type with id '1' does not exist"),
])
def test_unknown_metadata_is_a_404_in_jiras_shape(testapp, demo, path, message):
    response = testapp.get(path, status=404)
    assert message in response.json["errorMessages"][0] and response.json["errors"] == {}


def test_get_issue_fields_and_expand(testapp, demo):
    issue = testapp.get("/rest/api/2/issue/DEMO-7", {"fields": "summary", "expand": "names"},
                        headers=FRED).json
    assert set(issue["fields"]) == {"summary"} and issue["names"] == {"summary": "Summary"}


def test_hidden_and_missing_issues_are_the_same_404(testapp, demo):
    hidden = testapp.get("/rest/api/2/issue/DEMO-7", status=404)
    missing = testapp.get("/rest/api/2/issue/DEMO-999", status=404)
    malformed = testapp.get("/rest/api/2/issue/not-a-key!", status=404)
    superscript = testapp.get("/rest/api/2/issue/%C2%B2", status=404)
    for response in (hidden, missing, malformed, superscript):
        assert response.json == {"errorMessages": [NOT_FOUND], "errors": {}}
    assert hidden.headers.get("WWW-Authenticate") is None  # not a 401: nothing to log in for
    hidden_id = testapp.get("/rest/api/2/issue/DEMO-7", headers=FRED).json["id"]
    assert testapp.get(f"/rest/api/2/issue/{hidden_id}", status=404).json == missing.json


def test_public_issue_anonymously(testapp, demo):
    issue = testapp.get("/rest/api/2/issue/DEMO-41").json
    assert issue["key"] == "DEMO-41" and issue["fields"]["security"] is None


# --- GET /field -----------------------------------------------------------------------------


def test_field_list(testapp, demo):
    fields = testapp.get("/rest/api/2/field").json
    required = {"id", "name", "custom", "orderable", "navigable", "searchable", "clauseNames", "schema"}
    assert all(required <= set(field) for field in fields)
    by_id = {field["id"]: field for field in fields}
    assert by_id["issuekey"]["clauseNames"] == ["issue", "issuekey", "key"]
    assert by_id["summary"]["searchable"] is True
    assert by_id["reporter"]["searchable"] is False


def test_field_clause_names_are_the_ones_the_parser_understands():
    for field in FIELDS:
        for name in field.clause_names:
            assert name.lower() in jql.SEARCH_CLAUSES or name.lower() in jql.SORT_CLAUSES
        assert field.searchable == any(n.lower() in jql.SEARCH_CLAUSES for n in field.clause_names)
    searchable = {jql.SEARCH_CLAUSES[n][0] for n in jql.SEARCH_CLAUSES} - {"text"}
    listed = {jql.SEARCH_CLAUSES[n.lower()][0] for f in FIELDS for n in f.clause_names
              if n.lower() in jql.SEARCH_CLAUSES}
    assert searchable == listed  # every field JQL can search is described by /field
