"""The conformance matrix of the seed's rules (issue 3), as one table.

The seed (``shared/seed``, Atlassian's "REST and os_authType" page) and the project rules of
``shared/reference/atlassian-rest-auth.md`` section 1, line by line:

* Rule 1 -- "If you submit an expired cookie to a REST resource under the /rest URL, you
  receive a 401 error response instead of silently being treated as an anonymous user."
  The stale cookie is left alone, so a client's cookie jar sends it again and the next
  request is a 401 too: deleted, the jar's next request would carry no cookie and be
  answered as anonymous. Exempt: ``POST`` to the login resource (a client holding a stale
  cookie must be able to log in again). Outside /rest: anonymous, cookie deleted, and HTML
  pages say the session expired. Every /rest answer that names nobody keeps them (an
  ``os_authType`` refusal, a failed login, a 400): only an answer served by Basic or a
  token deletes a stale cookie there.
* Rule 2 -- ``os_authType`` on any URL, case-insensitive:
  ``basic``: "401 ... and perform an HTTP Basic Authentication challenge if no username and
  password is specified"; ``cookie``: "401 if a valid cookie is not provided";
  ``any``: "If a username and password are not specified and there is not valid cookie,
  ... 401"; ``none``/absent: default behaviour; anything else: 400 naming the allowed values
  (project rule).
* Always: wrong or malformed Basic credentials are a 401 with ``X-Seraph-LoginReason:
  AUTHENTICATED_FAILED`` (never anonymous); valid Basic wins over a stale cookie; every 401
  carries ``WWW-Authenticate``: a Basic challenge where Basic can meet the demand
  (``basic``/``any``) or failed Basic credentials are refused, else the non-Basic
  ``Session`` scheme (``cookie``, rule 1).
* Bearer (issue 12, :data:`BEARER_MATRIX`): a valid personal access token meets
  ``os_authType=any`` but not ``basic`` or ``cookie``; a wrong, expired or revoked one is a
  401 with ``WWW-Authenticate: Bearer ... error="invalid_token"`` and
  ``AUTHENTICATED_FAILED`` everywhere -- stricter than Jira, which serves it as anonymous.

Each row of :data:`MATRIX` is one ``os_authType`` value and one kind of credentials; its three
cells are the expected answers on the three kinds of path. A cell reads

    STATUS  CHALLENGE  BODY  X-AUSERNAME  X-Seraph-LoginReason  SESSION-COOKIE

CHALLENGE is the ``WWW-Authenticate`` scheme (``Basic``, ``Session``, ``-`` for none);
SESSION-COOKIE is what the response does to the session cookie: ``deleted``, ``new`` (a new
session was issued) or ``-`` (left alone).
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import waitress
from sqlalchemy import make_url
from sqlalchemy.pool import NullPool

import appserver
from appserver.clock import FrozenClock
from appserver.models import User, get_engine
from appserver.security import tweens
from appserver.security.passwords import make_context
from appserver.security.personal_tokens import TokenStore
from appserver.security.sessions import SessionStore
from appserver.security.tokens import new_token

from .conftest import DATABASES
from .relay import TCPRelay
from .support import (
    ROOT,
    LiveServer,
    base_settings,
    fresh_database,
    migrate,
    serve_in_thread,
    sibling_database,
)

FRED_PASSWORD = "fred-password"

# --- The matrix ------------------------------------------------------------------------------

#: The three kinds of path: a /rest resource anonymous users may read (so "served as
#: anonymous" and "401" are told apart), the /rest login resource, and an HTML page.
PATHS = {
    "rest": ("GET", "/rest/api/2/serverInfo"),
    "login": ("POST", "/rest/auth/1/session"),  # body: {"username": "fred", "password": ...}
    "page": ("GET", "/"),
}

#: os_authType as sent (None: no parameter).
AUTHTYPES = {
    "absent": None,
    "none": "none",
    "basic": "basic",
    "cookie": "cookie",
    "any": "any",
    "unknown": "bogus",
    "COOKIE": "COOKIE",
}

#: The credentials a request presents. Cookies are fred's sessions; Basic is fred's.
CREDENTIALS = (
    "none",
    "live cookie",
    "expired cookie",  # idle timeout passed
    "revoked cookie",  # logged out
    "unknown cookie",  # well-formed, never issued
    "malformed cookie",
    "valid Basic",
    "wrong Basic",  # fred with a wrong password
    "malformed Basic",  # "Basic !!!"
    "valid Basic + stale cookie",  # + an expired cookie
)
BEARER_CREDENTIALS = tuple(
    f"{kind} Bearer{cookie}"
    for cookie in ("", " + stale cookie")  # + an expired session cookie
    for kind in ("valid", "wrong", "expired", "revoked")  # wrong: a valid token's id, another secret
)
STALE = {
    "expired cookie", "revoked cookie", "unknown cookie", "malformed cookie", "valid Basic + stale cookie",
    *(credentials for credentials in BEARER_CREDENTIALS if credentials.endswith("stale cookie")),
}

# fmt: off
MATRIX: list[tuple[str, str, str, str, str]] = [
    #os_authType credentials                    /rest/api/2/serverInfo (anonymous allowed)     POST /rest/auth/1/session (login)              HTML page /
    # -- absent: the default behaviour. Rule 1: a stale cookie under /rest is a 401 (not the login POST); elsewhere anonymous.
    ("absent",  "none",                        "200 -       json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      -      "),
    ("absent",  "live cookie",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("absent",  "expired cookie",              "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("absent",  "revoked cookie",              "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("absent",  "unknown cookie",              "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("absent",  "malformed cookie",            "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("absent",  "valid Basic",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("absent",  "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("absent",  "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("absent",  "valid Basic + stale cookie",  "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    # -- none: "default behaviour", exactly as absent.
    ("none",    "none",                        "200 -       json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      -      "),
    ("none",    "live cookie",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("none",    "expired cookie",              "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("none",    "revoked cookie",              "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("none",    "unknown cookie",              "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("none",    "malformed cookie",            "401 Session json anonymous -      -      ", "200 -       json fred      OK     new    ", "200 -       html anonymous -      deleted"),
    ("none",    "valid Basic",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("none",    "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("none",    "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("none",    "valid Basic + stale cookie",  "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    # -- basic: 401 + Basic challenge unless Basic credentials are given (and given ones are checked).
    #    A session cookie alone is not enough; refused credentials of another kind leave the 401 anonymous.
    ("basic",   "none",                        "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      -      "),
    ("basic",   "live cookie",                 "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      -      "),
    ("basic",   "expired cookie",              "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("basic",   "revoked cookie",              "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("basic",   "unknown cookie",              "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("basic",   "malformed cookie",            "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("basic",   "valid Basic",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("basic",   "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("basic",   "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("basic",   "valid Basic + stale cookie",  "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    # -- cookie: 401 unless a live session cookie is given. The challenge names the session resource, the only
    #    thing that meets it, even beside valid Basic (a browser's password dialog never could); wrong Basic is
    #    refused first, by the authentication tween, with its own Basic challenge.
    ("cookie",  "none",                        "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      -      "),
    ("cookie",  "live cookie",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("cookie",  "expired cookie",              "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("cookie",  "revoked cookie",              "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("cookie",  "unknown cookie",              "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("cookie",  "malformed cookie",            "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("cookie",  "valid Basic",                 "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      -      "),
    ("cookie",  "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("cookie",  "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("cookie",  "valid Basic + stale cookie",  "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    # -- any: 401 (with a Basic challenge) unless valid Basic credentials or a live session cookie are given.
    ("any",     "none",                        "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      -      "),
    ("any",     "live cookie",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("any",     "expired cookie",              "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("any",     "revoked cookie",              "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("any",     "unknown cookie",              "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("any",     "malformed cookie",            "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("any",     "valid Basic",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("any",     "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("any",     "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("any",     "valid Basic + stale cookie",  "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    # -- an unknown value: 400 naming the allowed values (failed Basic is still a 401 first).
    ("unknown", "none",                        "400 -       json anonymous -      -      ", "400 -       json anonymous -      -      ", "400 -       html anonymous -      -      "),
    ("unknown", "live cookie",                 "400 -       json fred      OK     -      ", "400 -       json fred      OK     -      ", "400 -       html fred      OK     -      "),
    ("unknown", "expired cookie",              "400 -       json anonymous -      -      ", "400 -       json anonymous -      -      ", "400 -       html anonymous -      deleted"),
    ("unknown", "revoked cookie",              "400 -       json anonymous -      -      ", "400 -       json anonymous -      -      ", "400 -       html anonymous -      deleted"),
    ("unknown", "unknown cookie",              "400 -       json anonymous -      -      ", "400 -       json anonymous -      -      ", "400 -       html anonymous -      deleted"),
    ("unknown", "malformed cookie",            "400 -       json anonymous -      -      ", "400 -       json anonymous -      -      ", "400 -       html anonymous -      deleted"),
    ("unknown", "valid Basic",                 "400 -       json fred      OK     -      ", "400 -       json fred      OK     -      ", "400 -       html fred      OK     -      "),
    ("unknown", "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("unknown", "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("unknown", "valid Basic + stale cookie",  "400 -       json fred      OK     deleted", "400 -       json fred      OK     deleted", "400 -       html fred      OK     deleted"),
    # -- COOKIE: the value is case-insensitive, exactly as cookie.
    ("COOKIE",  "none",                        "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      -      "),
    ("COOKIE",  "live cookie",                 "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("COOKIE",  "expired cookie",              "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("COOKIE",  "revoked cookie",              "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("COOKIE",  "unknown cookie",              "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("COOKIE",  "malformed cookie",            "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("COOKIE",  "valid Basic",                 "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      -      "),
    ("COOKIE",  "wrong Basic",                 "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("COOKIE",  "malformed Basic",             "401 Basic   json anonymous FAILED -      ", "401 Basic   json anonymous FAILED -      ", "401 Basic   html anonymous FAILED -      "),
    ("COOKIE",  "valid Basic + stale cookie",  "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
]

#: The Bearer column: the same cells, for personal access tokens (sorted by os_authType).
BEARER_MATRIX: list[tuple[str, str, str, str, str]] = [
    #os_authType credentials                      /rest/api/2/serverInfo (anonymous allowed)     POST /rest/auth/1/session (login)              HTML page /
    # -- absent: a valid token is fred everywhere (the login POST still logs in with its password); a token that cannot be used is a 401 with the Bearer challenge everywhere.
    ("absent",  "valid Bearer",                   "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("absent",  "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("absent",  "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("absent",  "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("absent",  "valid Bearer + stale cookie",    "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    ("absent",  "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("absent",  "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("absent",  "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    # -- none: exactly as absent.
    ("none",    "valid Bearer",                   "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("none",    "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("none",    "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("none",    "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("none",    "valid Bearer + stale cookie",    "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    ("none",    "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("none",    "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("none",    "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    # -- basic: a token is not Basic credentials: refused, anonymous, with the Basic challenge asked for.
    ("basic",   "valid Bearer",                   "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      -      "),
    ("basic",   "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("basic",   "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("basic",   "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("basic",   "valid Bearer + stale cookie",    "401 Basic   json anonymous -      -      ", "401 Basic   json anonymous -      -      ", "401 Basic   html anonymous -      deleted"),
    ("basic",   "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("basic",   "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("basic",   "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    # -- cookie: a token is not a session cookie: refused, anonymous (the challenge names the session resource).
    ("cookie",  "valid Bearer",                   "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      -      "),
    ("cookie",  "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("cookie",  "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("cookie",  "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("cookie",  "valid Bearer + stale cookie",    "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("cookie",  "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("cookie",  "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("cookie",  "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    # -- any: met by a valid token.
    ("any",     "valid Bearer",                   "200 -       json fred      OK     -      ", "200 -       json fred      OK     new    ", "200 -       html fred      OK     -      "),
    ("any",     "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("any",     "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("any",     "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("any",     "valid Bearer + stale cookie",    "200 -       json fred      OK     deleted", "200 -       json fred      OK     new    ", "200 -       html fred      OK     deleted"),
    ("any",     "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("any",     "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("any",     "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    # -- an unknown value: 400 (an unusable token is still a 401 first).
    ("unknown", "valid Bearer",                   "400 -       json fred      OK     -      ", "400 -       json fred      OK     -      ", "400 -       html fred      OK     -      "),
    ("unknown", "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("unknown", "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("unknown", "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("unknown", "valid Bearer + stale cookie",    "400 -       json fred      OK     deleted", "400 -       json fred      OK     deleted", "400 -       html fred      OK     deleted"),
    ("unknown", "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("unknown", "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("unknown", "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    # -- COOKIE: as cookie.
    ("COOKIE",  "valid Bearer",                   "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      -      "),
    ("COOKIE",  "wrong Bearer",                   "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("COOKIE",  "expired Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("COOKIE",  "revoked Bearer",                 "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED -      "),
    ("COOKIE",  "valid Bearer + stale cookie",    "401 Session json anonymous -      -      ", "401 Session json anonymous -      -      ", "401 Session html anonymous -      deleted"),
    ("COOKIE",  "wrong Bearer + stale cookie",    "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("COOKIE",  "expired Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),
    ("COOKIE",  "revoked Bearer + stale cookie",  "401 Bearer  json anonymous FAILED -      ", "401 Bearer  json anonymous FAILED -      ", "401 Bearer  html anonymous FAILED deleted"),

]
# fmt: on


@dataclass(frozen=True)
class Expected:
    status: int
    challenge: str  # "Basic", "Session" or "-"
    body: str  # "json" or "html"
    user: str  # X-AUSERNAME
    reason: str  # X-Seraph-LoginReason: "OK", "FAILED" (AUTHENTICATED_FAILED) or "-"
    cookie: str  # "deleted", "new" or "-"

    @classmethod
    def parse(cls, cell: str) -> Expected:
        status, challenge, body, user, reason, cookie = cell.split()
        return cls(int(status), challenge, body, user, reason, cookie)


def _cases() -> Iterator[Any]:
    for authtype, credentials, *cells in MATRIX + BEARER_MATRIX:
        for path_kind, cell in zip(PATHS, cells):
            yield pytest.param(
                path_kind, authtype, credentials, Expected.parse(cell),
                id=f"{path_kind}-{authtype}-{credentials.replace(' ', '_')}",
            )


def test_the_matrix_is_complete():
    """Every os_authType value meets every kind of credentials exactly once."""
    rows = [(authtype, credentials) for authtype, credentials, *_ in MATRIX]
    assert sorted(rows) == sorted((a, c) for a in AUTHTYPES for c in CREDENTIALS)
    bearer_rows = [(authtype, credentials) for authtype, credentials, *_ in BEARER_MATRIX]
    assert sorted(bearer_rows) == sorted((a, c) for a in AUTHTYPES for c in BEARER_CREDENTIALS)
    assert all(len(cells) == len(PATHS) for _, _, *cells in MATRIX + BEARER_MATRIX)


# --- Arranging the credentials ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fred_hash() -> str:
    """Hash fred's password once per module: the matrix has hundreds of cells."""
    return make_context().hash(FRED_PASSWORD)


@pytest.fixture
def fred(app_request, fred_hash: str) -> User:
    now = app_request.now
    user = User(
        username="fred", username_key="fred", display_name="Fred Developer",
        email="fred@example.com", password_hash=fred_hash, active=True, admin=False,
        created_at=now, password_changed_at=now, login_count=0,
        current_failed_logins=0, total_failed_logins=0,
    )
    app_request.dbsession.add(user)
    app_request.dbsession.flush()
    return user


def session_token(request, user: User, *, seconds_ago: float = 0, revoked: bool = False) -> str:
    """A session of ``user`` issued ``seconds_ago`` (and not used since)."""
    settings = request.appserver_settings
    store = SessionStore(
        request.dbsession,
        request.now - timedelta(seconds=seconds_ago),
        idle_timeout=settings.idle_timeout,
        max_age=settings.max_age,
        touch_interval=settings.touch_interval,
    )
    issued = store.issue(user)
    if revoked:
        store.revoke(issued.session)
    return issued.token


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def bearer_token(kind: str, request, user: User) -> str:
    """A personal access token of ``user``: valid, wrong (right id, wrong secret), expired
    (yesterday) or revoked."""
    if kind == "expired":
        store = TokenStore(request.dbsession, request.now - timedelta(days=2), touch_interval=60)
        return store.issue(user, "expired", request.now - timedelta(days=1)).raw
    issued = request.token_store.issue(user, kind, request.now + timedelta(days=30))
    if kind == "revoked":
        request.token_store.revoke(issued.token)
    if kind == "wrong":
        secret = issued.raw.split("_", 2)[2]
        return f"apt_{issued.token.id}_" + ("B" if secret.startswith("A") else "A") + secret[1:]
    return issued.raw


def present(credentials: str, request, user: User) -> tuple[dict[str, str], str | None]:
    """The request headers for ``credentials``, and the session cookie value sent (if any)."""
    idle = request.appserver_settings.idle_timeout
    if credentials in BEARER_CREDENTIALS:
        headers = {"Authorization": "Bearer " + bearer_token(credentials.split()[0], request, user)}
        cookie = session_token(request, user, seconds_ago=idle + 1) if "stale" in credentials else None
        if cookie is not None:
            headers["Cookie"] = f"{request.appserver_settings.session_cookie}={cookie}"
        return headers, cookie
    cookie = {
        "live cookie": lambda: session_token(request, user),
        "expired cookie": lambda: session_token(request, user, seconds_ago=idle + 1),
        "revoked cookie": lambda: session_token(request, user, revoked=True),
        "unknown cookie": new_token,
        "malformed cookie": lambda: "not-a-session-token",
        "valid Basic + stale cookie": lambda: session_token(request, user, seconds_ago=idle + 1),
    }.get(credentials, lambda: None)()
    authorization = {
        "valid Basic": basic("fred", FRED_PASSWORD),
        "wrong Basic": basic("fred", "not-freds-password"),
        "malformed Basic": "Basic !!!",
        "valid Basic + stale cookie": basic("fred", FRED_PASSWORD),
    }.get(credentials)
    headers = {}
    if cookie is not None:
        headers["Cookie"] = f"{request.appserver_settings.session_cookie}={cookie}"
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers, cookie


def send(testapp, path_kind: str, authtype: str | None, headers: dict[str, str], prefix: str = "/rest"):
    method, path = PATHS[path_kind]
    path = path.replace("/rest", prefix, 1)
    if authtype is not None:
        path += "?os_authType=" + authtype
    if method == "POST":
        return testapp.post_json(path, {"username": "fred", "password": FRED_PASSWORD},
                                 headers=headers, expect_errors=True)
    return testapp.get(path, headers=headers, expect_errors=True)


def session_set_cookie(response, name: str) -> str:
    """What the response does to the session cookie: ``deleted``, ``new`` or ``-``."""
    found = [h for h in response.headers.getall("Set-Cookie") if h.startswith(name + "=")]
    assert len(found) <= 1, found
    if not found:
        return "-"
    value = found[0].split(";", 1)[0].split("=", 1)[1]
    attributes = found[0].lower()
    if value in ("", '""'):
        # Deleted with the attributes it was set with, or browsers keep the original.
        assert {"max-age=0", "path=/", "httponly", "samesite=lax"} <= {
            part.strip() for part in attributes.split(";")
        }
        return "deleted"
    return "new"


def challenge_scheme(response) -> str:
    header = response.headers.get("WWW-Authenticate")
    return header.split(None, 1)[0] if header else "-"


# --- The test --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path_kind", "authtype", "credentials", "expected"), list(_cases()))
def test_conformance(testapp, app_request, fred, path_kind, authtype, credentials, expected):
    headers, sent_cookie = present(credentials, app_request, fred)
    response = send(testapp, path_kind, AUTHTYPES[authtype], headers)

    assert response.status_int == expected.status, response.text[:500]
    assert challenge_scheme(response) == expected.challenge
    if expected.status == 401:  # RFC 7235: every 401 carries a challenge
        assert expected.challenge != "-"
    if expected.challenge == "Basic":
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="appserver"')
    if expected.challenge == "Bearer":
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="appserver", error="invalid_token"')
    assert response.headers["X-AUSERNAME"] == expected.user
    reason = {"-": None, "OK": "OK", "FAILED": "AUTHENTICATED_FAILED"}[expected.reason]
    assert response.headers.get("X-Seraph-LoginReason") == reason
    cookie_name = app_request.appserver_settings.session_cookie
    assert session_set_cookie(response, cookie_name) == expected.cookie
    if expected.cookie == "new":
        assert f"{cookie_name}={sent_cookie};" not in response.headers["Set-Cookie"]

    if expected.body == "json":
        assert response.content_type == "application/json"
        if expected.status >= 400:
            assert set(response.json) == {"errorMessages", "errors"}
            assert response.json["errorMessages"], "an error must say what is wrong"
    else:
        assert response.content_type == "text/html"
        _check_page(response, stale=credentials in STALE and expected.user == "anonymous")
    if expected.status == 400:
        assert all(value in response.text for value in tweens.OS_AUTHTYPES)


def _check_page(response, *, stale: bool) -> None:
    """An HTML answer to a stale cookie says the session expired and links to the login
    page, returning to this very page; no other page says so."""
    notice = response.html.select_one("#session-expired")
    if not stale:
        assert notice is None
        return
    assert notice is not None and "expired" in notice.text
    link = urlsplit(notice.select_one("a")["href"])
    assert link.path == "/login"
    path = response.request.path_qs
    assert parse_qs(link.query)["os_destination"] == [path]


# --- Beyond the table: cells whose point is the rule's wording -------------------------------


def test_expired_cookie_on_a_resource_that_needs_login_says_log_in_again(testapp, app_request, fred):
    """The 401 of rule 1 says why and how to log in again, whatever the resource."""
    headers, _ = present("expired cookie", app_request, fred)
    response = testapp.get("/rest/api/2/myself", headers=headers, status=401)
    (message,) = response.json["errorMessages"]
    assert "expired" in message and "/rest/auth/1/session" in message
    assert response.headers["WWW-Authenticate"].startswith("Session ")


def test_rule_1_covers_every_method_but_the_login_post(testapp, app_request, fred):
    """GET and DELETE of the session resource are not exempt: only logging in is."""
    for method in ("GET", "DELETE"):
        headers, _ = present("revoked cookie", app_request, fred)
        response = testapp.request(
            "/rest/auth/latest/session", method=method, headers=headers, expect_errors=True
        )
        assert response.status_int == 401
        assert "expired" in response.json["errorMessages"][0]


def test_login_post_with_a_stale_cookie_works_under_latest_too(testapp, app_request, fred):
    headers, old = present("expired cookie", app_request, fred)
    response = testapp.post_json(
        "/rest/auth/latest/session", {"username": "fred", "password": FRED_PASSWORD}, headers=headers
    )
    assert response.json["session"]["value"] != old


def test_os_authtype_given_twice_with_different_values_is_a_400(testapp):
    response = testapp.get("/rest/api/2/serverInfo?os_authType=none&os_authType=cookie", status=400)
    assert "os_authType" in response.json["errors"]


def test_cookie_rule_is_met_by_a_live_cookie_even_with_basic_credentials(testapp, app_request, fred):
    """os_authType=cookie asks for a live session cookie; Basic credentials beside it do not
    take it away."""
    token = session_token(app_request, fred)
    headers = {"Cookie": f"appserver.session={token}", "Authorization": basic("fred", FRED_PASSWORD)}
    response = testapp.get("/rest/api/2/myself?os_authType=cookie", headers=headers, status=200)
    assert response.json["name"] == "fred"


def test_cookie_rule_is_not_met_by_another_users_cookie_beside_basic(testapp, app_request, fred, fred_hash):
    """Basic wins over the cookie: alice's live cookie beside fred's Basic would have the
    request answered as fred, which os_authType=cookie did not ask for (an outside review)."""
    now = app_request.now
    alice = User(
        username="alice", username_key="alice", display_name="Alice", email="alice@example.com",
        password_hash=fred_hash, active=True, admin=False, created_at=now, password_changed_at=now,
        login_count=0, current_failed_logins=0, total_failed_logins=0,
    )
    app_request.dbsession.add(alice)
    app_request.dbsession.flush()
    headers = {
        "Cookie": f"appserver.session={session_token(app_request, alice)}",
        "Authorization": basic("fred", FRED_PASSWORD),
    }
    response = testapp.get("/rest/api/2/myself?os_authType=cookie", headers=headers, status=401)
    assert response.json["errorMessages"] == [
        "os_authType=cookie: the session cookie and the Authorization header name different users: "
        "send the cookie alone."
    ]
    assert response.headers["X-AUSERNAME"] == "anonymous"
    # Without the demand, Basic is what serves it, as everywhere else.
    assert testapp.get("/rest/api/2/myself", headers=headers).json["name"] == "fred"


def test_the_page_refusing_a_demand_for_basic_logs_in_to_the_page_without_it(testapp):
    """The login page cannot meet os_authType=basic: back from it, the same 401 again (an
    outside review: a loop, by the page's link and by the header's). Both return to the
    page without the demand."""
    page = testapp.get("/issues?os_authType=basic&startAt=50", status=401)
    actions = {a.text: a["href"] for a in page.html.select("main .actions a")}
    assert actions == {"Log in": "/login?os_destination=%2Fissues%3FstartAt%3D50"}
    assert page.html.select_one("#login-link")["href"] == "/login?os_destination=%2Fissues%3FstartAt%3D50"
    assert page.headers["WWW-Authenticate"].startswith("Basic ")
    page = testapp.get("/issues?os_authType=cookie", status=401)
    actions = {a.text: a["href"] for a in page.html.select("main .actions a")}
    assert actions == {"Log in": "/login?os_destination=%2Fissues%3Fos_authType%3Dcookie"}


# --- Switching the tweens off, and another prefix --------------------------------------------


def test_rest_cookie_rule_can_be_switched_off(make_app, app_request, fred):
    testapp = make_app(**{"appserver.rest_cookie_rule": "false"})
    headers, _ = present("expired cookie", app_request, fred)
    response = testapp.get("/rest/api/2/serverInfo", headers=headers, status=200)
    assert response.headers["X-AUSERNAME"] == "anonymous"  # Seraph's default: anonymous
    assert session_set_cookie(response, "appserver.session") == "deleted"
    # os_authType still works: the switches are independent.
    testapp.get("/rest/api/2/serverInfo?os_authType=cookie", headers=headers, status=401)


def test_os_authtype_can_be_switched_off(make_app, app_request, fred):
    testapp = make_app(**{"appserver.os_authtype": "false"})
    for value in ("cookie", "basic", "any", "bogus"):
        response = testapp.get(f"/?os_authType={value}", status=200)
        assert response.headers["X-AUSERNAME"] == "anonymous"
    headers, _ = present("expired cookie", app_request, fred)
    testapp.get("/rest/api/2/serverInfo", headers=headers, status=401)  # rule 1 still on


def test_both_switches_off_is_seraphs_default_everywhere(make_app, app_request, fred):
    testapp = make_app(**{"appserver.os_authtype": "false", "appserver.rest_cookie_rule": "false"})
    headers, _ = present("revoked cookie", app_request, fred)
    response = testapp.get("/rest/api/2/serverInfo?os_authType=cookie", headers=headers, status=200)
    assert response.headers["X-AUSERNAME"] == "anonymous"
    # Failed Basic is never anonymous, switches or not.
    testapp.get("/rest/api/2/serverInfo", headers={"Authorization": "Basic !!!"}, status=401)


def test_a_custom_rest_prefix_moves_the_rules_with_it(make_app, app_request, fred):
    testapp = make_app(**{"appserver.rest_prefix": "/jira/rest"})
    headers, _ = present("expired cookie", app_request, fred)
    stale = testapp.get("/jira/rest/api/2/serverInfo", headers=headers, status=401)
    assert stale.content_type == "application/json"
    assert "/jira/rest/auth/1/session" in stale.headers["WWW-Authenticate"]
    login = send(testapp, "login", None, headers, prefix="/jira/rest")
    assert login.status_int == 200 and login.json["session"]["name"] == "appserver.session"
    # /rest is now an ordinary path: an HTML 404, and no rule 1 there.
    old = testapp.get("/rest/api/2/serverInfo", status=404)
    assert old.content_type == "text/html"


def test_invalid_switch_values_stop_start_up(app_settings):
    from appserver.settings import ConfigurationError

    for name in ("appserver.rest_cookie_rule", "appserver.os_authtype"):
        with pytest.raises(ConfigurationError, match=re.escape(name)):
            appserver.main({}, **{**app_settings, name: "sometimes"})
    with pytest.raises(ConfigurationError, match="appserver.rest_prefix"):
        appserver.main({}, **{**app_settings, "appserver.rest_prefix": "rest/"})


# --- ptweens: the documented order is the real one -------------------------------------------


def documented_tween_order() -> list[str]:
    """The names listed under "Order (outermost first ...)" in tweens.py's docstring."""
    doc = tweens.__doc__ or ""
    block = doc.split("Order (outermost first", 1)[1].split("\n\n", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line.startswith("    ") and line[4] != " "]


def test_ptweens_lists_the_tweens_in_the_documented_order():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ptweens"), "development.ini"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    listed = re.findall(r"^\d+\s+(\S+)\s*$", result.stdout, flags=re.MULTILINE)
    ours = [name for name in listed if not name.startswith("pyramid_debugtoolbar")]
    documented = documented_tween_order()
    assert len(ours) == len(documented), (listed, documented)
    for name, doc_name in zip(ours, documented):
        assert doc_name in name, (listed, documented)
    # The order the rules need, whatever else gets added around them.
    needed = [
        "pyramid_tm.tm_tween_factory",
        "appserver.security.tweens.authentication_tween_factory",
        "appserver.security.tweens.os_authtype_tween_factory",
        "appserver.security.tweens.rest_cookie_rule_tween_factory",
        "pyramid.tweens.excview_tween_factory",
    ]
    assert [name for name in listed if name in needed] == needed
    # Nothing reads the path, query or form before the tween that refuses unreadable ones.
    assert listed.index("appserver.security.tweens.unreadable_request_tween_factory") < listed.index(
        "pyramid_debugtoolbar.toolbar_tween_factory"
    )


def test_proutes_lists_every_route():
    """pyramid's own route lister runs (it failed on ``request_method=not_(...)``)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "proutes"), "development.ini"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^rest\.myself\s+/rest/api/\{version:2\|latest\}/myself\s", result.stdout, flags=re.MULTILINE), result.stdout


# --- The database is down --------------------------------------------------------------------


def start_server(database_url: str, **engine_options: Any) -> LiveServer:
    """The app on waitress on a loopback port, with an engine made with ``engine_options``."""
    from datetime import datetime, timezone

    from appserver.demo import seed_demo

    clock = FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))
    engine = get_engine({"sqlalchemy.url": database_url, **{f"sqlalchemy.{k}": v for k, v in engine_options.items()}})
    settings = base_settings(database_url)
    settings["appserver.dbengine"] = engine
    settings["appserver.clock"] = clock
    app = appserver.main({}, **settings)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    live = LiveServer(f"http://127.0.0.1:{server.effective_port}", app, clock, engine, server)
    with live.request() as request:
        for _ in seed_demo(request):
            pass
    live._thread = serve_in_thread(server)
    return live


def assert_unavailable(response: requests.Response, body: str) -> None:
    assert response.status_code == 503, response.text[:300]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-AUSERNAME"] == "anonymous"
    if body == "json":
        assert response.headers["Content-Type"].startswith("application/json")
        assert "database is unavailable" in response.json()["errorMessages"][0]
    else:
        assert response.headers["Content-Type"].startswith("text/html")
        assert "Try again" in response.text and "Traceback" not in response.text


def exercise_outage(server: LiveServer, stop, restart) -> None:
    """Credentials meet a database that is gone: 503 (JSON under /rest, a page elsewhere)
    with Retry-After, never anonymous; back again, the same cookie works."""
    login = requests.post(server.url + "/rest/auth/1/session",
                          json={"username": "fred", "password": "fred-password"}, timeout=10)
    cookies = {"appserver.session": login.json()["session"]["value"]}
    assert requests.get(server.url + "/rest/api/2/myself", cookies=cookies, timeout=10).json()["name"] == "fred"

    stop()
    for _ in range(2):  # the first request finds the outage, the second must not get past it
        assert_unavailable(requests.get(server.url + "/rest/api/2/serverInfo", cookies=cookies, timeout=10), "json")
        assert_unavailable(requests.get(server.url + "/rest/api/2/myself", cookies=cookies, timeout=10), "json")
        assert_unavailable(requests.get(server.url + "/", cookies=cookies, timeout=10), "html")
        assert_unavailable(requests.get(server.url + "/rest/api/2/serverInfo",
                                        auth=("fred", "fred-password"), timeout=10), "json")
        assert_unavailable(requests.post(server.url + "/rest/auth/1/session", timeout=10,
                                         json={"username": "fred", "password": "fred-password"}), "json")
    # Without credentials there is nothing to check: public answers need no database.
    assert requests.get(server.url + "/rest/api/2/serverInfo", timeout=10).status_code == 200

    restart()
    me = requests.get(server.url + "/rest/api/2/myself", cookies=cookies, timeout=10)
    assert me.status_code == 200 and me.json()["name"] == "fred"
    assert requests.get(server.url + "/", cookies=cookies, timeout=10).headers["X-AUSERNAME"] == "fred"
    assert requests.get(server.url + "/rest/api/2/myself", auth=("fred", "fred-password"),
                        timeout=10).status_code == 200


def sqlite_outage(tmp_path: Path) -> None:
    """The SQLite file's directory goes away (an unmounted volume) and comes back.

    Each request opens the file (NullPool): a pooled connection would keep reading the
    moved file through its open descriptor and never notice.
    """
    directory = tmp_path / "data"
    directory.mkdir()
    url = f"sqlite:///{directory / 'app.sqlite'}"
    engine = get_engine({"sqlalchemy.url": url})
    migrate(engine)
    engine.dispose()
    server = start_server(url, poolclass=NullPool)
    away = tmp_path / "unmounted"
    try:
        exercise_outage(server, lambda: directory.rename(away), lambda: away.rename(directory))
    finally:
        server.stop()
        server.engine.dispose()


def postgresql_outage() -> None:
    """PostgreSQL behind a TCP relay that stops (every connection cut, new ones refused)
    and starts again on the same port; the engine pre-pings as production.ini's does."""
    url = fresh_database(sibling_database(os.environ["TEST_DATABASE_URL"], "outage"))
    real = make_url(url)
    relay = TCPRelay(real.host or "127.0.0.1", real.port or 5432)
    relay.start()
    via_relay = real.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    server = start_server(via_relay, pool_pre_ping="true")
    try:
        exercise_outage(server, relay.stop, relay.start)
    finally:
        server.stop()
        server.engine.dispose()
        relay.stop()


@pytest.mark.parametrize("database", DATABASES)
def test_database_down(database: str, tmp_path: Path):
    if database == "sqlite":
        sqlite_outage(tmp_path)
    else:
        postgresql_outage()
