"""Set-Cookie headers for the session and remember-me cookies.

Deletion cookies carry the same Path/Secure/HttpOnly/SameSite as the cookie they delete, or
browsers keep the original.
"""
from __future__ import annotations

from webob.cookies import make_cookie

from ..settings import AppSettings


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
