"""Templates, the JSON renderer and static assets."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pyramid.config import Configurator
from pyramid.csrf import get_csrf_token
from pyramid.renderers import JSON
from pyramid.request import Request
from pyramid.response import Response


def jira_time(value: datetime | None) -> str | None:
    """Jira's timestamp format: ``2016-01-27T07:30:51.349+0000``."""
    if value is None:
        return None
    # isoformat is one C call where strftime was two (serverInfo's serverTime, every call);
    # its offset "+00:00" becomes Jira's "+0000" (and no offset stays none, as with %z).
    text = value.isoformat(timespec="milliseconds")
    return text[:23] + text[23:].replace(":", "")


#: Jira's Content-Type for every JSON answer, to the byte: atlassian-python-api reads a 401's
#: ``errorMessages`` only when the header is exactly this (anything else is "Unauthorized
#: (401)" and the reason is lost), and other clients compare it as a string too.
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


class JiraJSON(JSON):
    """Pyramid's JSON renderer, answering with :data:`JSON_CONTENT_TYPE` (a view that set a
    content type of its own keeps it, as with Pyramid's).

    It answers bytes, which Pyramid sets as the body as they are: a string would be encoded
    by the response's charset, read again from the Content-Type header. The JSON is ASCII
    (non-ASCII characters are escaped), the same bytes in any charset a view could name."""

    def __call__(self, info: Any) -> Callable[[Any, dict], bytes]:
        serialize = self.serializer
        options = self.kw

        def _render(value: Any, system: dict) -> bytes:
            request = system.get("request")
            if request is not None:
                response = request.response
                if response.content_type == response.default_content_type:
                    response.headers["Content-Type"] = JSON_CONTENT_TYPE
            return serialize(value, default=self._make_default(request), **options).encode("ascii")

        return _render


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer made outside a renderer (errors, tweens), with Jira's Content-Type."""
    response = Response(json.dumps(body, separators=(",", ":")).encode(), status=status)
    response.headers["Content-Type"] = JSON_CONTENT_TYPE
    return response


def _csrf_token(request: Request) -> str:
    return get_csrf_token(request)


def includeme(config: Configurator) -> None:
    config.include("pyramid_jinja2")
    config.add_jinja2_renderer(".jinja2")
    config.commit()
    environment = config.get_jinja2_environment()
    environment.filters["jira_time"] = jira_time
    environment.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

    renderer = JiraJSON()
    renderer.add_adapter(datetime, lambda value, request: jira_time(value))
    config.add_renderer("json", renderer)

    config.add_request_method(_csrf_token, "csrf_token", property=True)
    config.add_static_view("static", "appserver:static", cache_max_age=3600)
