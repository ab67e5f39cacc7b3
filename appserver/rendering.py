"""Templates, the JSON renderer and static assets."""
from __future__ import annotations

from datetime import datetime

from pyramid.config import Configurator
from pyramid.csrf import get_csrf_token
from pyramid.renderers import JSON
from pyramid.request import Request


def jira_time(value: datetime | None) -> str | None:
    """Jira's timestamp format: ``2016-01-27T07:30:51.349+0000``."""
    if value is None:
        return None
    # isoformat is one C call where strftime was two (serverInfo's serverTime, every call);
    # its offset "+00:00" becomes Jira's "+0000" (and no offset stays none, as with %z).
    text = value.isoformat(timespec="milliseconds")
    return text[:23] + text[23:].replace(":", "")


def _csrf_token(request: Request) -> str:
    return get_csrf_token(request)


def includeme(config: Configurator) -> None:
    config.include("pyramid_jinja2")
    config.add_jinja2_renderer(".jinja2")
    config.commit()
    environment = config.get_jinja2_environment()
    environment.filters["jira_time"] = jira_time
    environment.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

    json = JSON()
    json.add_adapter(datetime, lambda value, request: jira_time(value))
    config.add_renderer("json", json)

    config.add_request_method(_csrf_token, "csrf_token", property=True)
    config.add_static_view("static", "appserver:static", cache_max_age=3600)
