"""The load users (Locust): browsers, jira-style REST clients, Basic clients, attackers and
an administrator, all at once, against the servers of the plan (``LOADTEST_PLAN``).

Every response goes through :meth:`LoadUser.send`, which records it in the journal and
checks the per-response invariants there (who the response names, anonymous answers to
credentials); a violation marks the request failed in Locust's own report too. Acknowledged
writes (logouts, revocations, password changes) are checked at once by using the old
cookie or password, and listed for the orchestrator to check again after the faults.

Run by ``python -m tests.load`` (never imported by pytest: Locust patches the standard
library with gevent on import).
"""
from __future__ import annotations

import itertools
import random
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent.pool import Group
from locust import HttpUser, between, events, task
from locust.clients import HttpSession
from locust.exception import StopUser

from tests.load.cookies import NO_AUTOMATIC_COOKIES, CookieJar, admin_user_id, csrf_token
from tests.load.journal import ANONYMOUS_REST, Journal
from tests.load.plan import MANAGED_PER_ADMINISTRATOR, Plan

PLAN = Plan.load()
JOURNAL = Journal()
MAX_TASKS_PER_USER = 20000  # a bound on every loop, besides Locust's --run-time
TIMEOUT = 20  # seconds per request
SEARCH = "/rest/api/2/search?jql=project%20%3D%20DEMO&maxResults=20"
ALL_ISSUES = 200  # what a logged-in user sees; anonymous sees 5
CHANGE_CHANNELS = ("basic", "cookie", "form")  # how the administrator changes managed0, 1, 2

_numbers: dict[str, itertools.count] = {}
_victims = iter(PLAN.accounts.get("victim", []))


def _next_number(kind: str) -> int:
    return next(_numbers.setdefault(kind, itertools.count()))


def works_as(response: Any, username: str) -> bool:
    """The request was served as ``username`` (the credentials still work)."""
    return (
        response is not None
        and 200 <= response.status_code < 300
        and (response.headers.get("X-AUSERNAME") or "").casefold() == username.casefold()
    )


class LoadUser(HttpUser):
    abstract = True
    host = PLAN.servers[0]
    account_kind = ""

    def on_start(self) -> None:
        self.client.cookies.set_policy(NO_AUTOMATIC_COOKIES)
        if PLAN.ca_file:  # Locust's clients ignore REQUESTS_CA_BUNDLE (trust_env is off)
            self.client.verify = PLAN.ca_file
        number = _next_number(type(self).__name__)
        self.server = number % len(PLAN.servers)
        self.jar = CookieJar()
        # When the request that set the session cookie we hold was sent: the session may exist
        # from then on, so a revocation that ends after it may have caught it, although the
        # login's answer (and so the cookie) arrived after the revocation's.
        self.issued = 0.0
        self.in_doubt = False  # a request of ours died without an answer since then
        self.tasks_done = 0
        if self.account_kind:
            self.username, self.password = PLAN.accounts[self.account_kind][number]

    def count_task(self) -> None:
        self.tasks_done += 1
        if self.tasks_done > MAX_TASKS_PER_USER:
            raise StopUser()

    # -- one request, checked ------------------------------------------------------------------

    def send(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        as_user: str | None,
        jar: CookieJar | None = None,
        cookie: str | None = None,
        auth: tuple[str, str] | None = None,
        session: HttpSession | None = None,
        retry: bool = False,
        **kwargs: Any,
    ):
        """Send one request to our current server, record and check its answer.

        ``jar``: the cookies to send and update (default: ours); ``cookie``: send exactly this
        Cookie header and keep nothing. A request that gets no answer (the server was killed)
        moves us to the next server; ``retry`` repeats it there (idempotent requests only).
        Returns the response, or None when there was no answer.
        """
        jar = self.jar if jar is None and cookie is None else jar
        for _ in range(2 if retry else 1):
            server = self.server
            base = PLAN.servers[server]
            headers = {"X-Forwarded-Proto": "https"} if PLAN.https else {}
            if method != "GET":
                scheme = "https" if PLAN.https else "http"
                headers["Origin"] = f"{scheme}://{urlsplit(base).netloc}"
            sent_cookie = cookie if cookie is not None else jar.header()
            if sent_cookie:
                headers["Cookie"] = sent_cookie
            presented = auth is not None or any(
                name in sent_cookie for name in (PLAN.session_cookie, PLAN.remember_cookie)
            )
            client = session or self.client
            t0 = time.time()
            with client.request(
                method, base + path, name=kind, headers=headers, auth=auth, timeout=TIMEOUT,
                allow_redirects=False, catch_response=True, **kwargs,
            ) as response:
                t1 = time.time()
                if not response.status_code:
                    JOURNAL.connection_error(kind, t0, t1, server, repr(response.error))
                    response.failure(f"no answer from server {server}: {response.error!r}")
                    self.in_doubt = True
                    self.server = (server + 1) % len(PLAN.servers)
                    continue
                problems = JOURNAL.record(
                    kind, path.split("?")[0], response.status_code, response.headers, t0, t1, server,
                    as_user=as_user, presented=presented,
                )
                if jar is not None:
                    changed = jar.update(response)
                    if jar is self.jar and PLAN.session_cookie in changed:
                        self.issued, self.in_doubt = t0, False
                        JOURNAL.session_issued(self.username, jar.header(only=PLAN.session_cookie), t1)
                if problems:
                    response.failure(problems[0])
                elif response.status_code >= 500:
                    response.failure(f"{response.status_code}")  # judged against the fault windows later
                else:
                    response.success()
            if response.status_code == 503:
                gevent.sleep(0.3)  # a polite client backs off (Retry-After is in seconds)
            return response
        return None

    def form_login(self, who: str, jar: CookieJar, name: str, password: str, *, as_user: str | None,
                   session: HttpSession | None = None, remember: bool = False):
        """The login form as a browser fills it: GET /login for the CSRF token, then POST.
        Returns the POST's answer (or the login page, when remember-me logged us in at once),
        None when the page did not come."""
        page = self.send(f"{who} GET /login", "GET", "/login", as_user=as_user, jar=jar, session=session, retry=True)
        if page is None or page.status_code != 200:
            return None
        if as_user is not None and works_as(page, as_user):
            return page
        form = {"os_username": name, "os_password": password, "csrf_token": csrf_token(page.text) or "",
                "os_destination": "/issues"}
        if remember:
            form["os_cookie"] = "true"
        return self.send(f"{who} POST /login", "POST", "/login", as_user=as_user, jar=jar, session=session, data=form)

    def refused(self, response: Any, kind: str) -> None:
        """We held a session the server should know, and were treated as logged out."""
        JOURNAL.refused(self.username, self.issued, time.time(), kind, response.status_code, self.in_doubt)
        self.jar.clear()

    def dead_credentials(self, write_id: str, username: str, cookies: list[str], note: str) -> None:
        """After an acknowledged logout/revoke/password change: the old cookies must not work."""
        for cookie in cookies:
            probe = self.send("verify: old cookie refused", "GET", "/rest/api/2/myself",
                              as_user=username, cookie=cookie, retry=True)
            if works_as(probe, username):
                JOURNAL.lost(write_id, f"{note}: an old cookie of {username} still works")

    def has_session(self) -> bool:
        return PLAN.session_cookie in self.jar.values


class Browser(LoadUser):
    """Form login (CSRF token), pages, sometimes remember-me and a browser restart, logout."""

    account_kind = "browser"
    wait_time = between(0.05, 0.3)

    def login(self) -> bool:
        answer = self.form_login("browser", self.jar, self.username, self.password, as_user=self.username,
                                 remember=random.random() < 0.4)
        return answer is not None and answer.status_code in (200, 303) and self.has_session()

    @task
    def visit(self) -> None:
        self.count_task()
        if not self.has_session() and not self.login():
            return
        token = None
        for kind, path in (
            ("browser GET /", "/"),
            ("browser GET /issues", "/issues"),
            ("browser GET /issues/KEY", f"/issues/DEMO-{random.randint(1, 200)}"),
            ("browser GET /account", "/account"),
        ):
            page = self.send(kind, "GET", path, as_user=self.username, retry=True)
            if page is None or page.status_code >= 500:
                return
            if not works_as(page, self.username):
                self.refused(page, kind)
                return
            token = csrf_token(page.text) or token
        roll = random.random()
        if roll < 0.15 and PLAN.remember_cookie in self.jar.values:
            self.restart_browser()
        elif roll < 0.30 and token:
            self.logout(token)

    def restart_browser(self) -> None:
        """Session cookies die with the browser; the remember-me cookie logs us in again."""
        self.jar.drop(PLAN.session_cookie)
        page = self.send("browser GET / (remember-me)", "GET", "/", as_user=self.username, retry=True)
        if page is not None and page.status_code < 500 and not works_as(page, self.username):
            self.refused(page, "browser GET / (remember-me)")

    def logout(self, token: str) -> None:
        dead = [self.jar.header(only=name) for name in (PLAN.session_cookie, PLAN.remember_cookie)]
        dead = [cookie for cookie in dead if cookie]
        answer = self.send("browser POST /logout", "POST", "/logout", as_user=self.username,
                           data={"csrf_token": token})
        if answer is not None and answer.status_code == 303:
            write_id = JOURNAL.acknowledged("logout", self.username, dead)
            self.dead_credentials(write_id, self.username, dead, "browser logout")
        self.jar.clear()


class RestClient(LoadUser):
    """The jira client's way: cookie login with the session resource, search, re-login once
    after a 401, sometimes log out (DELETE the session)."""

    account_kind = "rest"
    wait_time = between(0.05, 0.3)

    def login(self) -> bool:
        answer = self.send("rest POST /rest/auth/1/session", "POST", "/rest/auth/1/session",
                           as_user=self.username, json={"username": self.username, "password": self.password})
        return answer is not None and answer.status_code == 200 and self.has_session()

    def get(self, kind: str, path: str):
        """GET with our cookie; on a 401, log in again once and repeat (jira's behaviour)."""
        if not self.has_session() and not self.login():
            return None
        answer = self.send(kind, "GET", path, as_user=self.username, retry=True)
        if answer is not None and answer.status_code == 401:
            self.refused(answer, kind)
            if not self.login():
                return None
            answer = self.send(kind + " (after re-login)", "GET", path, as_user=self.username, retry=True)
        return answer

    @task(4)
    def search(self) -> None:
        self.count_task()
        answer = self.get("rest GET /rest/api/2/search", SEARCH)
        if answer is not None and answer.status_code == 200 and answer.json().get("total") != ALL_ISSUES:
            JOURNAL.violate(ANONYMOUS_REST, f"search for {self.username}: total {answer.json().get('total')}")

    @task(2)
    def myself(self) -> None:
        self.count_task()
        self.get("rest GET /rest/api/2/myself", "/rest/api/2/myself")

    @task(2)
    def issue(self) -> None:
        self.count_task()
        self.get("rest GET /rest/api/2/issue/KEY", f"/rest/api/2/issue/DEMO-{random.randint(1, 200)}")

    @task(1)
    def logout(self) -> None:
        self.count_task()
        if not self.has_session():
            return
        dead = [self.jar.header(only=PLAN.session_cookie)]
        answer = self.send("rest DELETE /rest/auth/1/session", "DELETE", "/rest/auth/1/session", as_user=self.username)
        if answer is not None and answer.status_code == 204:
            write_id = JOURNAL.acknowledged("logout", self.username, dead)
            self.dead_credentials(write_id, self.username, dead, "REST logout")
        self.jar.clear()


class BasicClient(LoadUser):
    """HTTP Basic on every request (atlassian-python-api's way): never logged out."""

    account_kind = "basic"
    wait_time = between(0.1, 0.4)

    def fetch(self, kind: str, path: str):
        answer = self.send(kind, "GET", path, as_user=self.username, auth=(self.username, self.password), retry=True)
        if answer is not None and answer.status_code in (401, 403):
            self.refused(answer, kind)  # nobody ever changes or locks these accounts
        return answer

    @task(2)
    def myself(self) -> None:
        self.count_task()
        self.fetch("basic GET /rest/api/2/myself", "/rest/api/2/myself")

    @task(1)
    def search(self) -> None:
        self.count_task()
        answer = self.fetch("basic GET /rest/api/2/search", SEARCH)
        if answer is not None and answer.status_code == 200 and answer.json().get("total") != ALL_ISSUES:
            JOURNAL.violate(ANONYMOUS_REST, f"Basic search for {self.username}: total {answer.json().get('total')}")


class Attacker(LoadUser):
    """Guesses passwords: for each victim, ``max_failures - 1`` wrong guesses one by one, then a
    burst of wrong guesses at once (REST login, Basic, the form), then the right password,
    which must be refused (403): the account is locked. Between victims, a storm of guesses
    at names without an account."""

    wait_time = between(0.2, 0.6)

    def on_start(self) -> None:
        super().on_start()
        self.username = "attacker"
        self.sessions = []
        for _ in range(PLAN.burst):
            session = HttpSession(self.host, self.environment.events.request, self)
            session.cookies.set_policy(NO_AUTOMATIC_COOKIES)
            session.verify = PLAN.ca_file or True
            self.sessions.append(session)

    def guess(self, name: str, password: str, channel: str, session: HttpSession) -> str:
        """One login attempt; "checked" (the password was checked and wrong), "denied"
        (locked: not checked), "ok" or "other"."""
        jar = CookieJar()
        if channel == "rest":
            answer = self.send("attack POST /rest/auth/1/session", "POST", "/rest/auth/1/session", as_user=None,
                               jar=jar, session=session, json={"username": name, "password": password})
        elif channel == "basic":
            answer = self.send("attack Basic GET /rest/api/2/myself", "GET", "/rest/api/2/myself", as_user=None,
                               jar=jar, session=session, auth=(name, password))
        else:
            answer = self.form_login("attack", jar, name, password, as_user=None, session=session)
        if answer is None:
            return "other"
        reason = answer.headers.get("X-Seraph-LoginReason", "")
        if reason == "AUTHENTICATED_FAILED" and answer.status_code in (200, 401):
            return "checked"
        if reason == "AUTHENTICATION_DENIED" and answer.status_code == 403:
            return "denied"
        return "ok" if answer.status_code in (200, 303) else "other"

    def wrong(self) -> str:
        return "wrong-" + secrets.token_hex(4)

    @task
    def attack(self) -> None:
        self.count_task()
        victim = next(_victims, None)
        if victim is None:
            self.storm()
            return
        name, password = victim
        channels = ["rest", "basic", "form"]
        outcomes = [self.guess(name, self.wrong(), random.choice(channels), self.client)
                    for _ in range(PLAN.max_failures - 1)]
        burst = Group()
        greenlets = [burst.spawn(self.guess, name, self.wrong(), random.choice(channels), session)
                     for session in self.sessions]
        burst.join(timeout=60)
        outcomes += [g.value or "other" for g in greenlets]
        JOURNAL.victim_checks[name] += outcomes.count("checked")
        if "ok" in outcomes:
            JOURNAL.lockout_breaches.append(f"{name}: a wrong password logged in")
        if outcomes.count("checked") >= PLAN.max_failures and "other" not in outcomes:
            right = self.send("attack right guess after lock-out", "POST", "/rest/auth/1/session",
                              as_user=name, jar=CookieJar(), json={"username": name, "password": password})
            if right is not None and right.status_code == 200:
                JOURNAL.lockout_breaches.append(f"{name}: the right guess logged in during the lock-out")

    def storm(self) -> None:
        """Wrong guesses at names without an account, all at once (they are counted too)."""
        storm = Group()
        for session in self.sessions:
            name = "nobody-" + secrets.token_hex(3)
            storm.spawn(self.guess, name, self.wrong(), random.choice(["rest", "basic"]), session)
        storm.join(timeout=60)


class Administrator(LoadUser):
    """Logs users out everywhere from the admin page, and changes the passwords of its
    managed accounts over REST Basic (after a wrong attempt: authentication writes first),
    REST with a cookie, and the account page."""

    account_kind = "admin"
    wait_time = between(0.3, 0.8)

    def on_start(self) -> None:
        super().on_start()
        number = int(self.username.removeprefix("admin"))
        per = MANAGED_PER_ADMINISTRATOR
        self.managed = PLAN.accounts["managed"][number * per:(number + 1) * per]
        for name, password in self.managed:
            JOURNAL.passwords[name] = {"password": password, "previous": None, "landed": 0, "in_doubt": 0}
        self.targets = [name for kind in ("browser", "rest") for name, _ in PLAN.accounts.get(kind, [])]

    # -- logins of the administrator and of the managed accounts ------------------------------

    def log_in_form(self, jar: CookieJar, name: str, password: str) -> bool:
        answer = self.form_login("admin", jar, name, password, as_user=name)
        return answer is not None and answer.status_code == 303 and PLAN.session_cookie in jar.values

    def rest_login(self, jar: CookieJar, name: str, password: str) -> bool:
        answer = self.send("admin POST /rest/auth/1/session", "POST", "/rest/auth/1/session", as_user=name,
                           jar=jar, json={"username": name, "password": password})
        if answer is None or answer.status_code != 200:
            return False
        JOURNAL.session_issued(name, jar.header(only=PLAN.session_cookie), time.time())
        return True

    def confirm_websudo(self) -> bool:
        """The WebSudo prompt as a browser submits it (its CSRF token and the password)."""
        prompt = self.send("admin GET /websudo", "GET", "/websudo", as_user=self.username, retry=True)
        if prompt is None or prompt.status_code != 200:
            return False
        answer = self.send("admin POST /websudo", "POST", "/websudo", as_user=self.username,
                           data={"csrf_token": csrf_token(prompt.text) or "", "websudo_password": self.password})
        return answer is not None and answer.headers.get("X-Atlassian-WebSudo") == "Has-Authentication"

    # -- log a user out everywhere -------------------------------------------------------------

    @task(2)
    def revoke(self) -> None:
        self.count_task()
        if not self.has_session() and not self.log_in_form(self.jar, self.username, self.password):
            return
        page = self.send("admin GET /admin/users", "GET", "/admin/users", as_user=self.username, retry=True)
        if page is not None and page.status_code == 303 and "/websudo" in page.headers.get("Location", ""):
            # Administration needs the password confirmed (WebSudo), then the page again.
            if not self.confirm_websudo():
                return
            page = self.send("admin GET /admin/users", "GET", "/admin/users", as_user=self.username, retry=True)
        if page is None or page.status_code >= 500:
            return
        if not works_as(page, self.username):
            self.refused(page, "admin GET /admin/users")
            return
        target = random.choice(self.targets)
        user_id, token = admin_user_id(page.text, target), csrf_token(page.text)
        if user_id is None or token is None:
            JOURNAL.violate("admin page without the user's form", target)
            return
        revocation = {"user": target, "t0": time.time(), "t1": None}
        JOURNAL.revocations.append(revocation)
        answer = self.send("admin POST revoke-sessions", "POST", f"/admin/users/{user_id}/revoke-sessions",
                           as_user=self.username, data={"csrf_token": token, "confirm": "yes"})
        if answer is not None and answer.status_code == 303:
            revocation["t1"] = time.time()
            dead = JOURNAL.sessions_before(target, revocation["t0"])[-2:]
            write_id = JOURNAL.acknowledged("revoke", target, dead)
            self.dead_credentials(write_id, target, dead, "log out everywhere")

    # -- change a managed account's password ---------------------------------------------------

    @task(2)
    def change_password(self) -> None:
        self.count_task()
        index = _next_number("managed") % len(self.managed)
        name = self.managed[index][0]
        channel = CHANGE_CHANNELS[index % len(CHANGE_CHANNELS)]  # one account, one way: a lost write names its path
        state = JOURNAL.passwords[name]
        current, new = state["password"], f"{name}-{secrets.token_hex(6)}"
        other = CookieJar()  # another session of the account: the change must end it
        if not self.rest_login(other, name, current):
            return
        dead = [other.header(only=PLAN.session_cookie)]
        if channel == "basic":
            self.send("admin wrong Basic (before a change)", "GET", "/rest/api/2/myself", as_user=name,
                      cookie="", auth=(name, "wrong-" + secrets.token_hex(3)))
            answer = self.send("admin PUT /rest/api/2/myself/password (Basic)", "PUT", "/rest/api/2/myself/password",
                               as_user=name, cookie="", auth=(name, current),
                               json={"currentPassword": current, "password": new})
        elif channel == "cookie":
            mine = CookieJar()
            if not self.rest_login(mine, name, current):
                return
            dead.append(mine.header(only=PLAN.session_cookie))
            answer = self.send("admin PUT /rest/api/2/myself/password (cookie)", "PUT", "/rest/api/2/myself/password",
                               as_user=name, jar=mine, json={"currentPassword": current, "password": new})
        else:
            mine = CookieJar()
            if not self.log_in_form(mine, name, current):
                return
            dead.append(mine.header(only=PLAN.session_cookie))
            page = self.send("admin GET /account", "GET", "/account", as_user=name, jar=mine, retry=True)
            if page is None or page.status_code != 200 or not csrf_token(page.text):
                return
            answer = self.send("admin POST /account/password", "POST", "/account/password", as_user=name, jar=mine,
                               data={"csrf_token": csrf_token(page.text), "current_password": current,
                                     "new_password": new, "confirm_password": new})
        self.judge_change(name, state, current, new, dead, answer)

    def basic_works(self, name: str, password: str) -> bool | None:
        """Does Basic with this password log in? None while the server cannot say (503)."""
        answer = self.send("verify: password", "GET", "/rest/api/2/myself", as_user=name, cookie="",
                           auth=(name, password), retry=True)
        if answer is None or answer.status_code >= 500:
            return None
        return works_as(answer, name)

    def settled(self, name: str, password: str) -> bool | None:
        """``basic_works``, asked again for up to 10 s while the database is away."""
        deadline = time.time() + 10
        while True:
            works = self.basic_works(name, password)
            if works is not None or time.time() > deadline:
                return works
            gevent.sleep(0.5)

    def judge_change(self, name: str, state: dict, current: str, new: str, dead: list[str], answer: Any) -> None:
        """Whatever the answer, afterwards exactly one of the two passwords works: the new one
        when the change was acknowledged, and the other sessions are gone with the old one."""
        acknowledged = answer is not None and answer.status_code in (204, 303)
        if answer is not None and not acknowledged and answer.status_code < 500:
            JOURNAL.refused(name, 0.0, time.time(), "admin password change", answer.status_code, False)
            return
        if not acknowledged:
            state["in_doubt"] += 1
        new_works = self.settled(name, new)
        if new_works is None:  # the database stayed away: the check after the run decides
            if acknowledged:
                state.update(password=new, previous=current, landed=state["landed"] + 1)
                JOURNAL.acknowledged("password", name, dead)
            else:
                state["unsure"] = new  # tried after the run if the password above is refused
            return
        old_works = self.settled(name, current)
        if new_works:
            state.update(password=new, previous=current, landed=state["landed"] + 1)
        kind = "password" if acknowledged else "password (unacknowledged, landed)"
        write_id = JOURNAL.acknowledged(kind, name, dead) if acknowledged or new_works else None
        if acknowledged and not new_works:
            JOURNAL.lost(write_id, f"password change of {name} acknowledged, the new password is refused"
                                   f"{' and the old one still works' if old_works else ''}")
        elif new_works and old_works:
            JOURNAL.lost(write_id, f"password change of {name}: the old password works as well as the new one")
        elif not new_works and old_works is False:
            JOURNAL.half_written.append(f"{name}: neither the old nor the new password works")
        if write_id is not None and new_works:
            self.dead_credentials(write_id, name, dead, "password change")


@events.test_stop.add_listener
def write_journal(environment, **kwargs) -> None:
    JOURNAL.dump(Path(PLAN.results))


def _counts_from_plan() -> None:
    for user_class in (Browser, RestClient, BasicClient, Attacker, Administrator):
        user_class.fixed_count = PLAN.users.get(user_class.__name__, 0)


_counts_from_plan()
