"""The ``Host`` header, read strictly, and the names this server answers to
(``appserver.allowed_hosts``).

Every absolute URL the application builds (``Location``, the ``login-url`` of a challenge,
``self``, ``baseUrl``) starts with the request's host, which the client chose. Reading it
strictly and checking it against a list closes Host-header injection and DNS rebinding. No
imports from the rest of the application: the settings parser uses this module.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

#: ``name[:port]`` or ``[ipv6][:port]``; anything else (userinfo ``@``, paths, spaces,
#: several colons outside brackets) is not a host.
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class InvalidHost(ValueError):
    """Not a host name, address or pattern this server can compare."""


@dataclass(frozen=True)
class Host:
    name: str  # lower case, no trailing dot; an IPv6 address in brackets, compressed
    port: int | None


@dataclass(frozen=True)
class HostPattern:
    """One entry of ``appserver.allowed_hosts``: ``name``, ``name:port``, ``[::1]``, or
    ``.example.com`` / ``*.example.com`` for a domain and every name under it. Without a
    port, any port matches."""

    name: str
    port: int | None = None
    subdomains: bool = False

    def matches(self, host: Host) -> bool:
        if self.port is not None and host.port != self.port:
            return False
        if host.name == self.name:
            return True
        return self.subdomains and host.name.endswith("." + self.name)


def _name(text: str) -> str:
    if text.startswith("["):
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise InvalidHost(f"{text!r} is not an IPv6 address") from None
        return f"[{address.compressed}]"
    if text.endswith("."):  # the fully qualified form names the same host
        text = text[:-1]
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidHost(f"{text!r} is not a host name")
    return text


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def parse_host(value: str) -> Host:
    """The request's ``Host`` (already a Latin-1 ``str`` in WSGI); :class:`InvalidHost` for
    anything that is not exactly one host name or address with an optional port."""
    if not value.isascii():
        raise InvalidHost("a host name must be ASCII (IDNA names are sent as xn--...)")
    match = _HOST.fullmatch(value.lower())
    if match is None:
        raise InvalidHost(f"{value[:100]!r} is not a host name with an optional port")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidHost(f"port {port} is out of range")
    return Host(_name(match.group("name")), int(port) if port is not None else None)


def parse_host_pattern(entry: str) -> HostPattern:
    subdomains = entry.startswith((".", "*."))
    if entry == "*":
        raise InvalidHost("'*' would accept any Host: list the names this server answers to")
    domain = entry.removeprefix("*").removeprefix(".") if subdomains else entry
    if "*" in domain:
        raise InvalidHost(f"{entry!r}: a wildcard may only open a name, as in *.example.com")
    host = parse_host(domain)
    if subdomains and (host.name.startswith("[") or _is_ipv4(host.name)):
        raise InvalidHost(f"{entry!r}: only names have subdomains")
    if subdomains and "." not in host.name:
        # *.com, *.internal: every name under a top-level domain, anybody's among them.
        raise InvalidHost(f"{entry!r} would accept every name under a top-level domain: "
                          "name your own domain, as in *.example.com")
    return HostPattern(host.name, host.port, subdomains)


def host_allowed(value: str, patterns: tuple[HostPattern, ...]) -> bool:
    """Whether ``value`` (a ``Host`` header) names this server."""
    try:
        host = parse_host(value)
    except InvalidHost:
        return False
    return any(pattern.matches(host) for pattern in patterns)


def host_checker(patterns: tuple[HostPattern, ...]) -> Callable[[str], bool]:
    """:func:`host_allowed` for one list of patterns, remembered for the last few hundred
    values: a server answers to a handful of names, and parsing them cost more than anything
    else before the request reached its view. Keyed by the value alone (hashing the patterns
    on every request would cost a call per pattern)."""
    return lru_cache(maxsize=256)(partial(host_allowed, patterns=patterns))
