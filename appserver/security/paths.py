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
    return request.path_info.startswith(CREDENTIAL_FREE_PREFIXES)
