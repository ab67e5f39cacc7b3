"""Cookies: the request's cookie jar, and Set-Cookie headers for the session and
remember-me cookies.

Deletion cookies carry the same Path/Secure/HttpOnly/SameSite as the cookie they delete, or
browsers keep the original.
"""
from __future__ import annotations

from webob.cookies import RequestCookies, make_cookie, parse_cookie

from ..settings import AppSettings


class TolerantRequestCookies(RequestCookies):
    """The request's cookie jar (``request.cookies``), tolerant of bytes that are not UTF-8.

    WebOb decodes every cookie strictly and raises ``UnicodeDecodeError`` from *any* cookie
    access, so one garbage cookie (``x="\\377"``, possibly set by another site on a parent
    domain) would fail every request. Here an undecodable value is decoded with U+FFFD
    replacements instead: a garbled session or remember-me cookie is then just a malformed
    token, treated like any other garbage.
    """

    _cache_key = "appserver.parsed_cookies"

    @property
    def _cache(self) -> dict[str, str]:
        header = self._environ.get("HTTP_COOKIE", "")
        cache, cache_header = self._environ.get(self._cache_key, ({}, None))
        if cache_header != header:
            cache = {
                name.decode("utf-8", "replace"): value.decode("utf-8", "replace")
                for name, value in parse_cookie(header)
            }
            self._environ[self._cache_key] = (cache, header)
        return cache


def set_cookie(settings: AppSettings, name: str, value: str, max_age: int | None) -> str:
    return make_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


def delete_cookie(settings: AppSettings, name: str) -> str:
    return make_cookie(
        name,
        None,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
