"""``X-Appserver-Process``: which process answered (``appserver.process_header = true``).

Off by default: it tells the world a host name and a process id. Behind a proxy that
balances several processes it proves where each request went (the deployment tests use it
to show that a session made on one process is honoured by another), and it lets an operator
find the process that answered a slow or failing request in the logs.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

HEADER = "X-Appserver-Process"

Handler = Callable[[Request], Response]


def process_name() -> str:
    """``host:pid``: unique among the processes behind one proxy, and findable in ``ps``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_header_tween_factory(handler: Handler, registry: Registry) -> Handler:
    if not registry.appserver_settings.process_header:
        return handler

    def process_header_tween(request: Request) -> Response:
        response = handler(request)
        response.headers[HEADER] = process_name()
        return response

    return process_header_tween


def includeme(config: Configurator) -> None:
    config.add_tween("appserver.process_header.process_header_tween_factory", under=INGRESS)
