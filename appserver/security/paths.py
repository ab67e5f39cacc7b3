"""Credential-free paths: where no credential is read, checked or changed.

A response that drops the cookie changes its request caused breaks the client: a rotated
remember-me token that never reaches the browser makes its next use look like theft. Static
files are served without cookies, so their requests must not touch credentials at all:
they are answered as anonymous, and ``os_authType`` does not apply to them.
"""
from __future__ import annotations

from pyramid.request import Request

CREDENTIAL_FREE_PREFIXES = ("/static/",)


def credential_free(request: Request) -> bool:
    # The raw WSGI path: an ASCII prefix matches it exactly when it matches the decoded one,
    # without decoding (and this is asked several times per request).
    return request.environ.get("PATH_INFO", "").startswith(CREDENTIAL_FREE_PREFIXES)
