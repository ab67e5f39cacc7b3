"""One request class with every ``add_request_method`` extension built in.

Pyramid applies request properties by creating a new class for every request
(``InstancePropertyHelper.apply_properties`` calls ``type()``), which costs more than
routing the request. Once the configuration is complete, the extensions are made the
attributes of one subclass of the request class, registered as the request factory, and
the per-request step is switched off: the same attributes, at no cost per request.
"""
from __future__ import annotations

from pyramid.config import Configurator
from pyramid.interfaces import IRequestExtensions, IRequestFactory
from pyramid.request import Request


def bake_request_extensions(config: Configurator) -> type[Request]:
    """Call after every ``include`` (the configuration is committed here)."""
    config.commit()
    registry = config.registry
    extensions = registry.queryUtility(IRequestExtensions)
    base = registry.queryUtility(IRequestFactory, default=Request)
    if extensions is None:
        return base
    attributes = {**extensions.methods, **extensions.descriptors, "__module__": base.__module__}
    baked = type(base.__name__, (base,), attributes)
    registry.registerUtility(baked, IRequestFactory)
    registry.unregisterUtility(provided=IRequestExtensions)
    return baked
