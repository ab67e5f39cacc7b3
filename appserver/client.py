"""A reference REST client for appserver (and Jira Server): log in with the session resource,
keep the cookie, and when a request answers 401 — the session expired or was revoked — log in
again *once* and repeat the request.

That is the pattern the seed asks REST clients to follow: a 401 means "your session is gone,
resubmit your credentials", never "here are the anonymous results". The client never loops:
if the repeated request is refused too, it raises :class:`AuthenticationError`. A logged-in
client also sends ``os_authType=cookie`` with every request, so that a cookie which does not
reach the server (dropped, or ``Secure`` over plain http) is a 401 as well, never a quietly
anonymous answer.

Library use::

    client = AppserverClient("http://127.0.0.1:6543", "fred", "fred-password")
    for issue in client.search("project = DEMO ORDER BY key"):
        print(issue["key"], issue["fields"]["summary"])

With a personal access token instead of a password (``Authorization: Bearer``; no session,
no re-login: a 401 means the token is wrong, expired or revoked)::

    client = AppserverClient("http://127.0.0.1:6543", token=os.environ["APPSERVER_TOKEN"])

Command line (the ``appserver-client`` console script)::

    APPSERVER_PASSWORD=fred-password appserver-client -u fred http://127.0.0.1:6543 search "project = DEMO"
    APPSERVER_TOKEN=apt_... appserver-client --token http://127.0.0.1:6543 search "project = DEMO"
"""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

PAGE_SIZE = 100
EXIT_API_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 1, 2, 3, 4


def _reason(error: requests.RequestException) -> str:
    """The one reason a person acts on, not urllib3's nested repr of every layer: "Connection
    refused" (nothing listens there), a timeout, a certificate that failed."""
    if isinstance(error, requests.exceptions.SSLError):
        return "the TLS handshake failed (a certificate this client does not trust?)"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:  # urllib3 nests its errors in args
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__context__ or cause.__cause__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], BaseException) else None)
    return type(error).__name__


class AppserverError(Exception):
    """The server refused a request; ``messages`` are its Jira-style ``errorMessages``."""

    def __init__(self, message: str, status: int | None = None, messages: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.messages = list(messages)


class AuthenticationError(AppserverError):
    """Logging in failed, or the server still answers 401 after logging in again."""


def _messages(response: requests.Response) -> list[str]:
    """The ``errorMessages`` and ``errors`` of a Jira-shaped error body, if it is one."""
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    messages = [str(m) for m in body.get("errorMessages") or []]
    messages += [f"{field}: {message}" for field, message in (body.get("errors") or {}).items()]
    return messages


def _error(response: requests.Response, what: str, kind: type[AppserverError] = AppserverError):
    messages = _messages(response)
    detail = "; ".join(messages) or response.reason or "no details"
    return kind(f"{what}: HTTP {response.status_code}: {detail}", response.status_code, messages)


class AppserverClient:
    """A cookie-session REST client that re-authenticates once on 401.

    Without a username it stays anonymous (and sees only what anonymous users may see).
    ``relogins`` counts how often an expired session was replaced, for the curious and for
    tests.
    """

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        rest_prefix: str = "/rest",
        token: str | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both a username and a password, or neither")
        if token is not None and username is not None:
            raise ValueError("give a username and password, or a token, not both")
        self.base_url = base_url.rstrip("/")
        self.rest = self.base_url + rest_prefix
        self.username = username
        self._password = password
        self.timeout = timeout
        self.http = session or requests.Session()
        self.http.headers.setdefault("Accept", "application/json")
        self.logged_in = False
        self.relogins = 0
        self.uses_token = token is not None
        if token is not None:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:  # never shows the password or the token
        who = "token" if self.uses_token else self.username or "anonymous"
        return f"<AppserverClient {self.base_url} user={who}>"

    # --- the session ---

    def login(self) -> dict[str, Any]:
        """POST the credentials to the session resource; the cookie lands in ``self.http``."""
        if self.username is None:
            raise AuthenticationError("this client has no credentials: it is anonymous")
        response = self.http.post(
            f"{self.rest}/auth/1/session",
            json={"username": self.username, "password": self._password},
            timeout=self.timeout,
        )
        if response.status_code == 401:
            raise _error(response, f"login as {self.username!r} failed", AuthenticationError)
        if response.status_code == 403:
            retry = response.headers.get("Retry-After")
            error = _error(response, f"login as {self.username!r} denied", AuthenticationError)
            if retry:
                error.args = (f"{error.args[0]} (try again in {retry} seconds)",)
            raise error
        if not response.ok:
            raise _error(response, "login failed")
        self.logged_in = True
        log.debug("logged in as %s", self.username)
        return response.json()

    def logout(self) -> None:
        """DELETE the session (server-side logout)."""
        if self.logged_in:
            self.http.delete(f"{self.rest}/auth/1/session", timeout=self.timeout)
            self.logged_in = False

    # --- requests ---

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request under ``/rest``; on 401 log in again once and repeat it."""
        if self.username is not None and not self.logged_in:
            self.login()
        url = f"{self.rest}/{path.lstrip('/')}"
        kwargs.setdefault("timeout", self.timeout)
        if self.username is not None:
            # os_authType=cookie: should the cookie not reach the server (dropped, or a Secure
            # cookie over plain http), answer 401 rather than anonymous results.
            kwargs["params"] = {**(kwargs.get("params") or {}), "os_authType": "cookie"}
        response = self.http.request(method, url, **kwargs)
        if response.status_code == 401 and self.username is not None:
            log.info("%s %s: 401 (session expired or revoked); logging in again", method, path)
            self.logged_in = False
            self.login()
            self.relogins += 1
            response = self.http.request(method, url, **kwargs)
            if response.status_code == 401:
                raise _error(
                    response,
                    "still refused right after logging in again (is the session cookie marked "
                    "Secure while you use plain http?)",
                    AuthenticationError,
                )
        if response.status_code == 401 and self.uses_token:
            raise _error(response, "the personal access token was refused", AuthenticationError)
        if response.status_code == 401:
            raise _error(response, f"{method} {path} needs you to log in", AuthenticationError)
        if not response.ok:
            raise _error(response, f"{method} {path} failed")
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    # --- resources ---

    def server_info(self) -> dict[str, Any]:
        return self.get("api/2/serverInfo")

    def myself(self) -> dict[str, Any]:
        return self.get("api/2/myself")

    def issue(self, key: str) -> dict[str, Any]:
        return self.get(f"api/2/issue/{requests.utils.quote(key, safe='')}")

    def search_page(self, jql: str, start_at: int = 0, max_results: int = PAGE_SIZE,
                    fields: str = "*navigable") -> dict[str, Any]:
        return self.get(
            "api/2/search", jql=jql, startAt=start_at, maxResults=max_results, fields=fields
        )

    def search(self, jql: str, *, fields: str = "*navigable", page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every issue matching ``jql``, fetched page by page (following the server's cap)."""
        start = 0
        while True:
            page = self.search_page(jql, start, page_size, fields)
            issues = page.get("issues") or []
            yield from issues
            start += len(issues)
            if not issues or start >= int(page.get("total") or 0):
                return


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appserver-client",
        description="Talk to appserver's (or Jira's) REST API with a cookie session that logs "
        "in again once when the session expires.",
        epilog="The password comes from $APPSERVER_PASSWORD, else it is prompted for (or read "
        "from standard input when that is not a terminal); with --token, the personal access "
        "token comes from $APPSERVER_TOKEN, else likewise. Exit status: 0 success, 1 the "
        "server refused the request, 2 usage error, 3 authentication failed, 4 server "
        "unreachable.",
    )
    parser.add_argument("url", type=_base_url, help="base URL of the server, e.g. http://127.0.0.1:6543")
    parser.add_argument(
        "-u", "--user", default=os.environ.get("APPSERVER_USER"),
        help="username (default $APPSERVER_USER; none: anonymous)",
    )
    parser.add_argument(
        "--token", action="store_true",
        help="authenticate with a personal access token (Authorization: Bearer) instead of a "
        "password: from $APPSERVER_TOKEN, else prompted for or read from standard input",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log re-logins to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="print the issues a JQL query finds")
    search.add_argument("jql", nargs="?", default="", help='e.g. "project = DEMO ORDER BY key"')
    search.add_argument("--limit", type=int, default=None, help="print at most this many")
    issue = commands.add_parser("issue", help="print one issue")
    issue.add_argument("key")
    commands.add_parser("myself", help="print who the server thinks you are")
    return parser


def _secret(variable: str = "APPSERVER_PASSWORD", prompt: str = "Password: ") -> str:
    secret = os.environ.get(variable)
    if secret:
        return secret
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def _print_issue(issue: dict[str, Any], out) -> None:
    fields = issue.get("fields") or {}
    status = (fields.get("status") or {}).get("name", "")
    print(f"{issue['key']:<10} {status:<12} {fields.get('summary', '')}", file=out)


def _base_url(value: str) -> str:
    """An http(s) URL with a host: anything else is a usage error (exit 2), not an
    unreachable server (4)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a server's URL: give one like http://127.0.0.1:6543")
    return value


def main(argv: Sequence[str] | None = None, *, stdout=None, stderr=None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    handler, level = logging.StreamHandler(err), log.level
    if args.verbose:
        handler.setFormatter(logging.Formatter("appserver-client: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    password = token = None
    if args.token:
        if args.user:
            print("appserver-client: give -u (a password) or --token, not both", file=err)
            return EXIT_USAGE
        token = _secret("APPSERVER_TOKEN", "Personal access token: ")
        if not token:
            print("appserver-client: no token given (set APPSERVER_TOKEN)", file=err)
            return EXIT_USAGE
    elif args.user:
        password = _secret()
        if not password:
            print("appserver-client: no password given (set APPSERVER_PASSWORD)", file=err)
            return EXIT_USAGE
    client = AppserverClient(args.url, args.user or None, password, token=token)
    try:
        if args.command == "search":
            count = 0
            for found in client.search(args.jql):
                if args.limit is not None and count >= args.limit:
                    break
                _print_issue(found, out)
                count += 1
            print(f"{count} issue{'' if count == 1 else 's'}", file=err)
        elif args.command == "issue":
            found = client.issue(args.key)
            _print_issue(found, out)
            print((found.get("fields") or {}).get("description") or "", file=out)
        else:
            me = client.myself()
            print(f"{me['name']} ({me.get('displayName', '')})", file=out)
    except AuthenticationError as error:
        print(f"appserver-client: {error}", file=err)
        return EXIT_AUTH
    except AppserverError as error:
        print(f"appserver-client: {error}", file=err)
        return EXIT_API_ERROR
    except requests.RequestException as error:
        print(f"appserver-client: cannot reach {args.url}: {_reason(error)}", file=err)
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly like other Unix tools, and keep the
        # interpreter from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    if client.relogins:
        print(f"(logged in again {client.relogins} time(s) after the session expired)", file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
