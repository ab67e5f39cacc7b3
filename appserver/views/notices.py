"""One-line confirmations shown after a redirect (``?notice=key``): a fixed list of texts,
so a link can never make the page say something of an attacker's choosing."""
from __future__ import annotations

from pyramid.request import Request

NOTICES = {
    "logged-out": "You have logged out.",
    "password-changed": "Your password has been changed. Your other sessions and remembered "
    "logins have been logged out.",
    "session-revoked": "The session has been logged out.",
    "session-not-found": "You have no such session: nothing was logged out.",
    "others-revoked": "All your other sessions have been logged out.",
    "user-created": "The account has been created.",
    "user-updated": "The account has been updated.",
    "password-set": "The password has been set: every session and remembered login of the "
    "account has ended, and so has a lock-out. Its personal access tokens keep working.",
    "token-revoked": "The personal access token has been revoked: it no longer works.",
    "token-not-found": "You have no such personal access token: nothing was revoked.",
    "websudo-dropped": "Administrator access dropped: the next administrator page asks for "
    "your password again.",
}


def notice_for(request: Request) -> str | None:
    return NOTICES.get(request.GET.get("notice", ""))
