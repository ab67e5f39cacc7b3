"""The load suite's judging rules (tests/load/verdict.py, journal.py, cookies.py), on
made-up evidence: each rule counts what it must and forgives only what it may, so a green
load run means the server kept the invariant, not that the judge looked away."""
from __future__ import annotations

from types import SimpleNamespace

from .load.cookies import CookieJar, admin_user_id
from .load.journal import ANONYMOUS_REST, WRONG_USER, Journal
from .load.report import percentile
from .load.verdict import (
    HALF_WRITTEN, LOCKOUT, LOST_WRITES, NO_ANSWER, REFUSED, SERVER_ERRORS, UNCOUNTED, Fault,
    allowed_no_answer, allowed_server_error, audited_changes, explained_refusal, judge, password_checks,
)

OUTAGE = Fault("PostgreSQL restarted", start=100.0, end=104.0, outage=True)
KILL = Fault("SIGKILL", start=200.0, end=200.0, outage=False, server=1)


def error(t0: float, t1: float, status: int = 503, retry_after: bool = True, server: int = 0) -> dict:
    return {"t0": t0, "t1": t1, "status": status, "retry_after": retry_after, "server": server, "kind": "k"}


def test_a_503_with_retry_after_is_allowed_only_during_an_outage_and_5_s_after_it():
    assert allowed_server_error(error(101, 101.1), [OUTAGE])
    assert allowed_server_error(error(99.5, 100.5), [OUTAGE])  # sent before, answered during
    assert allowed_server_error(error(108.9, 109.0), [OUTAGE])  # sent 4.9 s after the return
    assert not allowed_server_error(error(109.2, 109.3), [OUTAGE])  # full service 5 s after
    assert not allowed_server_error(error(99.0, 99.5), [OUTAGE])  # before the outage
    assert not allowed_server_error(error(101, 101.1, retry_after=False), [OUTAGE])
    assert not allowed_server_error(error(101, 101.1, status=500), [OUTAGE])
    assert not allowed_server_error(error(201, 201.1), [KILL])  # a killed process is no outage


def test_no_answer_is_allowed_only_from_the_killed_process_after_the_kill():
    cut = {"t0": 199.9, "t1": 200.1, "server": 1}
    assert allowed_no_answer(cut, [KILL])
    assert not allowed_no_answer({**cut, "server": 0}, [KILL])
    assert not allowed_no_answer({**cut, "t1": 199.95}, [KILL])
    assert not allowed_no_answer(cut, [OUTAGE])


def test_a_refusal_is_explained_only_by_a_revocation_of_that_user_after_the_login():
    refusal = {"user": "rest1", "issued": 50.0, "t1": 60.0, "in_doubt": False}
    assert explained_refusal(refusal, [{"user": "rest1", "t0": 55.0, "t1": 55.5}])
    assert explained_refusal(refusal, [{"user": "rest1", "t0": 59.0, "t1": None}])  # not acknowledged
    assert explained_refusal(refusal, [{"user": "rest1", "t0": 49.0, "t1": 50.5}])  # overlapped the login
    # Answered before the login's answer came, but after its request was sent (issued): the
    # login may have committed first (a load run saw this: 1 ms between the two answers).
    assert explained_refusal(refusal, [{"user": "rest1", "t0": 49.8, "t1": 50.001}])
    assert not explained_refusal(refusal, [{"user": "rest1", "t0": 40.0, "t1": 41.0}])  # before the login
    assert not explained_refusal(refusal, [{"user": "rest1", "t0": 61.0, "t1": 61.5}])  # after the refusal
    assert not explained_refusal(refusal, [{"user": "rest2", "t0": 55.0, "t1": 55.5}])
    assert not explained_refusal(refusal, [])
    assert explained_refusal({**refusal, "in_doubt": True}, [])


def test_every_response_names_its_own_user_or_anonymous():
    journal = Journal()

    def record(path: str, status: int, named: str | None, as_user: str | None, presented: bool) -> list[str]:
        headers = {"X-AUSERNAME": named} if named is not None else {}
        return journal.record("k", path, status, headers, 0.0, 0.01, 0, as_user=as_user, presented=presented)

    assert record("/rest/api/2/myself", 200, "fred", "fred", True) == []
    assert record("/rest/api/2/myself", 200, "FRED", "fred", True) == []
    assert record("/rest/api/2/myself", 401, "anonymous", "fred", True) == []
    assert record("/rest/api/2/serverInfo", 200, "anonymous", None, False) == []
    assert record("/rest/auth/1/session", 200, "anonymous", "fred", True) == []
    assert record("/issues", 200, "anonymous", "fred", True) == []  # HTML: the browser user judges
    assert record("/rest/api/2/myself", 200, "alice", "fred", True)
    assert record("/login", 200, "victim0", None, False)  # a wrong password logged in
    assert record("/rest/api/2/search", 200, "anonymous", "fred", True)
    assert journal.violations == {WRONG_USER: 2, ANONYMOUS_REST: 1}
    assert journal.statuses["k"] == {200: 8, 401: 1}


def test_the_lockout_counts_the_most_any_witness_saw():
    assert password_checks("v", 3, database=3, audited=3, seen=3) == ([], [])
    excess, _ = password_checks("v", 3, database=3, audited=4, seen=3)
    assert excess and "4 passwords checked" in excess[0]
    excess, uncounted = password_checks("v", 3, database=2, audited=2, seen=4)
    assert excess and uncounted
    assert password_checks("v", 3, database=1, audited=1, seen=1) == ([], [])


def test_the_audit_trail_lists_the_password_changes_that_took_effect():
    assert audited_changes("m", {"landed": 2, "in_doubt": 0}, 2) == []
    assert audited_changes("m", {"landed": 2, "in_doubt": 1}, 3) == []
    assert audited_changes("m", {"landed": 2, "in_doubt": 0}, 3)  # 204, audited, old password kept
    assert audited_changes("m", {"landed": 2, "in_doubt": 0}, 1)


def test_judge_counts_each_invariant_and_forgives_only_the_faults():
    journal = {
        "server_errors": [error(101, 101.1), error(150, 150.1), error(101, 101.2, status=500)],
        "violations": {WRONG_USER: 1}, "examples": {},
        "lost_writes": ["logout-1"], "lockout_breaches": ["victim1: the right guess logged in"],
        "refusals": [{"user": "b", "issued": 0.0, "t1": 10.0, "in_doubt": False, "kind": "k", "status": 401}],
        "revocations": [], "half_written": [], "writes": [],
        "connection_errors": [{"t0": 201, "t1": 201, "server": 1, "kind": "k", "error": "reset"},
                              {"t0": 201, "t1": 201, "server": 0, "kind": "k", "error": "reset"}],
        "answered": {"0": {"199": 4, "201": 5}, "1": {"199": 3}},
    }
    after = {"lost_writes": {"logout-1", "password-2"}, "lost_examples": [], "lockout_excess": ["v: 5"],
             "uncounted": [], "half_written": ["m: audit"]}
    verdict = judge(journal, [OUTAGE, KILL], after)
    assert verdict.counts == {
        SERVER_ERRORS: 2, WRONG_USER: 1, ANONYMOUS_REST: 0, LOST_WRITES: 2, LOCKOUT: 2, UNCOUNTED: 0,
        REFUSED: 1, HALF_WRITTEN: 1, NO_ANSWER: 1,
    }
    assert verdict.violated
    assert "SIGKILL: afterwards 0 answers from it, 5 from the other process" in verdict.notes


def test_cookies_are_kept_and_deleted_as_set_cookie_says():
    jar = CookieJar()
    headers = SimpleNamespace(getlist=lambda name: [
        "__Host-appserver.session=abc; Max-Age=43200; Path=/; Secure; HttpOnly",
        "__Host-appserver.remember=r1; Max-Age=1209600; Path=/; Secure; HttpOnly",
    ])
    assert jar.update(SimpleNamespace(raw=SimpleNamespace(headers=headers))) == {
        "__Host-appserver.session", "__Host-appserver.remember"}
    assert jar.header(only="__Host-appserver.session") == "__Host-appserver.session=abc"
    deleted = SimpleNamespace(getlist=lambda name: ["__Host-appserver.session=; Max-Age=0; Path=/"])
    assert jar.update(SimpleNamespace(raw=SimpleNamespace(headers=deleted))) == set()
    assert jar.header() == "__Host-appserver.remember=r1"


def test_the_admin_page_gives_the_id_of_the_named_user_only():
    page = ('<tr data-username="fred"><td>…<form action="/admin/users/7/revoke-sessions">'
            '<tr data-username="fred2"><td>…<form action="/admin/users/8/revoke-sessions">')
    assert admin_user_id(page, "fred") == "7"
    assert admin_user_id(page, "fred2") == "8"
    assert admin_user_id(page, "alice") is None


def test_percentiles_are_of_the_values_seen():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) == 0.0
