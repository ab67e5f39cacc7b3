"""appserver: authenticating browsers and REST clients the way Atlassian's
"REST and os_authType" page describes.

The architecture, one ``includeme`` per concern:
"""
from __future__ import annotations

import warnings

# pyramid 2.1 imports pkg_resources at start-up and setuptools 80 answers with a deprecation
# UserWarning on every command (pserve, appserver, appserver-client). It is pyramid's to fix;
# setup.cfg keeps setuptools < 81 so that pkg_resources is still there to import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from pyramid.config import Configurator  # noqa: E402 (after the filter above)
from pyramid.router import Router  # noqa: E402

from .request_factory import make_wsgi_app  # noqa: E402
from .resources import Root  # noqa: E402


def main(global_config: dict, **settings: str) -> Router:
    """The WSGI application (the ``paste.app_factory`` entry point)."""
    with Configurator(settings=settings, root_factory=Root) as config:
        config.include(".settings")  # typed, validated settings: bad values stop start-up
        config.include(".clock")  # the one source of "now" (tests inject a frozen clock)
        config.include(".models")  # SQLAlchemy, pyramid_tm, request.dbsession
        config.include(".health")  # GET /status for the proxy and the operator, credential-free
        config.include(".process_header")  # opt-in X-Appserver-Process: who answered
        config.include(".security")  # policy, sessions, passwords, CSRF, the seed's tweens
        config.include(".rendering")  # Jinja2 templates, JSON renderer, static files
        config.include(".errors")  # exception views free their tracebacks when a request ends
        config.include(".routes")  # every URL of the HTML pages and the /rest API
        config.scan(".views")
    return make_wsgi_app(config)  # request properties without a class per request
