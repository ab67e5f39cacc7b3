"""The ``/rest`` JSON API, in Jira's shapes."""
from __future__ import annotations

import json
from typing import Any

from pyramid.request import Request

from ...errors import error_response
from ...models import User
from ...security.account import Account
from ...rendering import jira_time
from .links import user_url


class BadJSON(Exception):
    """The body is not the JSON object a resource expects."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_object(request: Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadJSON("Send a JSON body with Content-Type: application/json.", 415)
    if request.content_length is not None and request.content_length > 1_000_000:
        raise BadJSON("The request body is too large.", 413)
    try:
        body = json.loads(request.body.decode(_body_encoding(request)), parse_constant=_not_a_number)
    except (ValueError, UnicodeDecodeError, LookupError):  # LookupError: unknown charset
        raise BadJSON("The request body is not valid JSON.") from None
    except RecursionError:  # [[[[... nested deeper than the parser's stack
        raise BadJSON("The request body is nested too deeply.") from None
    if not _is_unicode(body):
        raise BadJSON("The request body contains an unpaired surrogate (\\ud800-\\udfff escape): "
                      "strings must be valid Unicode.")
    if not isinstance(body, dict):
        raise BadJSON("The request body must be a JSON object.")
    return body


def _body_encoding(request: Request) -> str:
    """The body's charset (WebOb's default: UTF-8), where UTF-8 may begin with a byte order
    mark, as Jackson (Jira's parser) reads it."""
    charset = request.charset
    return "utf-8-sig" if charset.lower().replace("_", "-") in ("utf-8", "utf8") else charset


def _not_a_number(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are Python's extensions, not JSON: Jackson
    refuses them, and no field here could take them."""
    raise ValueError(f"{name} is not a JSON value")


def _is_unicode(body: Any) -> bool:
    """JSON may escape lone surrogates (``"\\ud800"``), which Python keeps in a ``str`` that
    no database, hash or log can encode: refuse them here, where the body is decoded."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bad_json_response(request: Request, error: BadJSON):
    return error_response(request, error.status, [str(error)])


def missing_strings(body: dict[str, Any], *fields: str) -> dict[str, str]:
    """Jira's ``errors`` object for required fields that are absent, empty or not strings,
    each saying which of the three it is."""
    problems = {}
    for field in fields:
        value = body.get(field)
        if field not in body or value is None:
            problems[field] = f"{field} is required"
        elif not isinstance(value, str):
            problems[field] = f"{field} must be a string"
        elif not value:
            problems[field] = f"{field} must not be empty"
    return problems


def login_info(user: User) -> dict[str, Any]:
    info: dict[str, Any] = {
        "failedLoginCount": user.total_failed_logins,
        "loginCount": user.login_count,
    }
    if user.last_failed_login_at is not None:
        info["lastFailedLoginTime"] = jira_time(user.last_failed_login_at)
    if user.previous_login_at is not None:
        info["previousLoginTime"] = jira_time(user.previous_login_at)
    return info


def user_json(request: Request, user: User | Account) -> dict[str, Any]:
    return {
        "self": user_url(request, user),
        "key": user.username_key,
        "name": user.username,
        "emailAddress": user.email,
        "displayName": user.display_name,
        "active": user.active,
        "timeZone": "UTC",
        "locale": "en_US",
    }
