"""One encoding for user data in response headers: percent-encoded UTF-8.

HTTP header values are Latin-1 on the wire (WSGI refuses anything else), so a username like
``user€`` or ``用户`` in ``X-AUSERNAME`` would fail the whole response after the request did
its work. Every header that carries user data goes through :func:`encode_header_value`:
RFC 3986's unreserved characters and a few harmless ASCII symbols stay as they are, so ASCII
names (``fred``, ``fred.smith@example.com``) are unchanged; everything else, ``%`` itself
included, becomes ``%XX`` bytes of its UTF-8 form. Clients decode with
``urllib.parse.unquote`` (or ``decodeURIComponent``).
"""
from __future__ import annotations

from urllib.parse import quote

#: Left as they are, besides letters, digits and ``_.-~``.
SAFE = "@+!$&'()*,;=:"


def encode_header_value(text: str) -> str:
    return quote(text, safe=SAFE, encoding="utf-8", errors="replace")
