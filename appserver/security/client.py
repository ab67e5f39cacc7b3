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
    return printable(request.user_agent or "", USER_AGENT_MAX_LENGTH)


def address(request: Request) -> str:
    return printable(request.client_addr or "", ADDRESS_MAX_LENGTH)
