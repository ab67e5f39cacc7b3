"""``os_destination``: where to go after login. Only same-site relative paths are honoured."""
from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

DEFAULT_DESTINATION = "/"


def safe_destination(candidate: str | None, default: str = DEFAULT_DESTINATION) -> str:
    """Return ``candidate`` if it is a path on this site, else ``default``; in both cases
    ready for a ``Location`` header (non-ASCII characters percent-encoded as UTF-8: header
    values must be Latin-1, so ``/€`` would otherwise fail the response).

    Browsers treat ``\\`` like ``/`` and drop tabs and newlines, so ``/\\evil.example``,
    ``/\\t/evil.example`` and their percent-encoded forms are all off-site.
    """
    if not candidate or len(candidate) > 2048 or not _a_path_of_this_site(candidate):
        return default
    end = min((i for i in (candidate.find("?"), candidate.find("#")) if i >= 0), default=len(candidate))
    result = quote(plain_path(candidate[:end]) + candidate[end:], safe="!#$%&'()*+,/:;=?@[]~")
    # Resolving the dot segments can bring a backslash to the front: "/./\\" became "/%5C",
    # which decoded reads as "//" (found by the property test, at random).
    return result if _a_path_of_this_site(result) else default


def _a_path_of_this_site(value: str) -> bool:
    """Whether ``value``, decoded as often as a server behind a proxy might (three times)
    and with backslashes read as slashes, is a path here, not another site's address."""
    probe = value
    for _ in range(3):  # catch double-encoded forms too
        decoded = unquote(probe)
        if decoded == probe:
            break
        probe = decoded
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in probe):
        return False
    normalised = probe.replace("\\", "/")
    if not value.startswith("/") or not normalised.startswith("/") or normalised.startswith("//"):
        return False
    parts = urlsplit(normalised)
    return not (parts.scheme or parts.netloc)


def plain_path(path: str) -> str:
    """``path`` with its dot segments resolved the way a browser resolves them, and never
    starting with ``//``: ``/.//evil.example`` is ``/evil.example`` (resolved as it stands
    it would be ``//evil.example``, which a later redirect may read as another host)."""
    segments: list[str] = []
    parts = path.split("/")[1:]
    for index, segment in enumerate(parts):
        dots = segment.lower().replace("%2e", ".")  # browsers read %2e in a path as a dot
        last = index == len(parts) - 1
        if dots == ".":
            if last:
                segments.append("")
        elif dots == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        else:
            segments.append(segment)
    return "/" + "/".join(segments).lstrip("/")
