"""What a request says about its client (user agent, address), made fit to store and show.

Both come from headers the client chooses (WebOb's ``client_addr`` follows
``X-Forwarded-For``): control characters are dropped, since PostgreSQL refuses NUL in text
and they have no place on the account page, and the length is capped to the column's.
"""
from __future__ import annotations

from pyramid.request import Request

USER_AGENT_MAX_LENGTH = 512
ADDRESS_MAX_LENGTH = 64


def printable(text: str, limit: int) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:limit]


def user_agent(request: Request) -> str:
    # WSGI hands header values over decoded as Latin-1; browsers send UTF-8 ("Łódź" came out
    # as "ÅÃ³dÅº"): the bytes read as UTF-8, anything that is not kept as U+FFFD.
    raw = request.user_agent or ""
    try:
        text = raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # not from a WSGI environ (a test's own str)
        text = raw
    return printable(text, USER_AGENT_MAX_LENGTH)


def address(request: Request) -> str:
    return printable(request.client_addr or "", ADDRESS_MAX_LENGTH)
