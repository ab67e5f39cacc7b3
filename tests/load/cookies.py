"""A client's cookies, kept by hand.

production.ini's cookies are ``Secure`` with the ``__Host-`` prefix: behind its TLS proxy a
browser sends them back, but a ``requests`` cookie jar talking plain http to waitress would
not. The load users therefore keep cookies themselves, which also lets them hold on to an
*old* cookie on purpose and check afterwards that the server refuses it.
"""
from __future__ import annotations

import re
from http.cookiejar import DefaultCookiePolicy
from typing import Any

#: Give this policy to a requests/Locust session so it never stores a cookie by itself.
NO_AUTOMATIC_COOKIES = DefaultCookiePolicy(allowed_domains=[])

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def set_cookie_headers(response: Any) -> list[str]:
    raw = getattr(response, "raw", None)
    headers = getattr(raw, "headers", None)
    if headers is not None and hasattr(headers, "getlist"):
        return list(headers.getlist("Set-Cookie"))
    value = response.headers.get("Set-Cookie")
    return [value] if value else []


class CookieJar:
    """name -> value; ``Set-Cookie`` with an empty value or ``Max-Age=0`` deletes."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def update(self, response: Any) -> set[str]:
        """Apply the response's Set-Cookie headers; returns the names that were set (not deleted)."""
        changed = set()
        for header in set_cookie_headers(response):
            pair, *attributes = header.split(";")
            name, _, value = pair.strip().partition("=")
            deleted = value == "" or any(a.strip().lower() == "max-age=0" for a in attributes)
            if deleted:
                self.values.pop(name, None)
            else:
                self.values[name] = value
                changed.add(name)
        return changed

    def header(self, only: str | None = None) -> str:
        """The Cookie header (of one cookie with ``only``), '' when there is none."""
        items = self.values.items() if only is None else [(only, self.values[only])] if only in self.values else []
        return "; ".join(f"{name}={value}" for name, value in items)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def drop(self, name: str) -> None:
        self.values.pop(name, None)

    def clear(self) -> None:
        self.values.clear()


def csrf_token(html: str) -> str | None:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    return found.group(1) if found else None


def admin_user_id(html: str, username: str) -> str | None:
    """The user's id on the administrator's user list (its "Log out everywhere" form)."""
    row = re.search(
        r'<tr data-username="' + re.escape(username) + r'">.*?/admin/users/(\d+)/revoke-sessions',
        html,
        re.S,
    )
    return row.group(1) if row else None
