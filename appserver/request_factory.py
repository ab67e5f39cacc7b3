"""One request class with every ``add_request_method`` extension built in.

Pyramid applies request properties by creating a new class for every request
(``InstancePropertyHelper.apply_properties`` calls ``type()``), which costs more than
routing the request. Once the configuration is complete, the extensions are made the
attributes of one subclass of the request class, registered as the request factory, and the
router no longer applies them per request: the same attributes, at no cost per request.

Three WebOb attributes are replaced too: ``path_info`` is decoded once, a request without a
body is not copied to make it seekable, and ``GET`` is kept on the request, not in the
environ (where it made a reference cycle).

The registry keeps its extensions, so a request made elsewhere (``pyramid.scripting.prepare``
with ``Request.blank``, pshell) still gets them the usual way. A subrequest should be made
with the app's class, ``type(request).blank(...)``: the router applies nothing to it.
"""
from __future__ import annotations

from pyramid.config import Configurator
from pyramid.interfaces import IRequestExtensions, IRequestFactory
from pyramid.request import Request
from pyramid.router import Router
from webob.multidict import GetDict


def _path_info(request: Request) -> str:
    # WebOb decodes PATH_INFO again on every read, and a request reads it a dozen times
    # (tweens, routing, the policy): decoded once per value of PATH_INFO. A tween that
    # rewrites the environ's PATH_INFO (the unreadable-request tween) gets the new value.
    raw = request.environ.get("PATH_INFO")
    cached = request.__dict__.get("_appserver_path_info")
    if cached is not None and cached[0] is raw:
        return cached[1]
    value = Request.path_info.fget(request)  # raises for a path that is not UTF-8
    request.__dict__["_appserver_path_info"] = (raw, value)
    return value


#: ``request.path_info``, decoded once (WebOb's setter and deleter).
PATH_INFO = property(_path_info, Request.path_info.fset, Request.path_info.fdel, Request.path_info.__doc__)


_PARSED_QUERY = "webob._parsed_query_vars"


def _get(request: Request) -> GetDict:
    # WebOb keeps the parsed query string in the environ, as a GetDict that refers to the
    # environ: a reference cycle on every request with a query string (the os_authType rule
    # reads it), which only the garbage collector frees. The same GetDict, parsed as WebOb
    # does and again when QUERY_STRING changes, kept on the request instead.
    source = request.environ.get("QUERY_STRING", "")
    cached = request.__dict__.get("_appserver_get")
    if cached is not None and cached[0] == source:
        return cached[1]
    value = Request.GET.fget(request)  # raises for a query string that is not UTF-8
    request.environ.pop(_PARSED_QUERY, None)
    request.__dict__["_appserver_get"] = (source, value)
    return value


#: ``request.GET``, without the environ -> GetDict -> environ cycle.
GET = property(_get, doc=Request.GET.__doc__)


def _make_body_seekable(request: Request) -> None:
    """pyramid_retry makes every request's body seekable before the first attempt, so that
    a retry can read it again. A request with neither ``Content-Length`` nor
    ``Transfer-Encoding`` has no body (RFC 9112, section 6.3): nothing to copy. WebOb would
    copy it anyway (waitress marks its input terminated), on every GET."""
    environ = request.environ
    if environ.get("CONTENT_LENGTH", "") in ("", "0") and "HTTP_TRANSFER_ENCODING" not in environ:
        return
    Request.make_body_seekable(request)


def bake_request_extensions(config: Configurator) -> type[Request]:
    """Commit the configuration and register the request class with the extensions built in."""
    config.commit()
    registry = config.registry
    extensions = registry.queryUtility(IRequestExtensions)
    base = registry.queryUtility(IRequestFactory, default=Request)
    methods, descriptors = (extensions.methods, extensions.descriptors) if extensions else ({}, {})
    attributes = {
        "path_info": PATH_INFO,
        "GET": GET,
        "make_body_seekable": _make_body_seekable,
        **methods,
        **descriptors,
        "__module__": base.__module__,
    }
    baked = type(base.__name__, (base,), attributes)
    registry.registerUtility(baked, IRequestFactory)
    return baked


def make_wsgi_app(config: Configurator) -> Router:
    """``config.make_wsgi_app()`` whose requests come with their extensions built in."""
    bake_request_extensions(config)
    app = config.make_wsgi_app()
    app.request_extensions = None  # the router's requests are of the baked class
    return app
