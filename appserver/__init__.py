"""appserver: authenticating browsers and REST clients the way Atlassian's
"REST and os_authType" page describes.

The architecture, one ``includeme`` per concern:
"""
from __future__ import annotations

from pyramid.config import Configurator
from pyramid.router import Router

from .resources import Root


def main(global_config: dict, **settings: str) -> Router:
    """The WSGI application (the ``paste.app_factory`` entry point)."""
    with Configurator(settings=settings, root_factory=Root) as config:
        config.include(".settings")  # typed, validated settings: bad values stop start-up
        config.include(".clock")  # the one source of "now" (tests inject a frozen clock)
        config.include(".models")  # SQLAlchemy, pyramid_tm, request.dbsession
        config.include(".security")  # policy, sessions, passwords, CSRF, the seed's tweens
        config.include(".rendering")  # Jinja2 templates, JSON renderer, static files
        config.include(".routes")  # every URL of the HTML pages and the /rest API
        config.scan(".views")
    return config.make_wsgi_app()
