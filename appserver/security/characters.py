"""The one test of which characters a name or a password may not hold."""
from __future__ import annotations

import unicodedata

#: Controls (NUL, tabs, newlines, escapes), lone surrogates, line and paragraph separators.
_REFUSED = frozenset(("Cc", "Cs", "Zl", "Zp"))


def has_control_characters(text: str) -> bool:
    """Controls and separators break a layout, a log line or a Basic header (and PostgreSQL
    refuses NUL in text); the format characters and spaces real text holds do not: a
    zero-width joiner in an emoji sequence or a Persian name, a no-break space in a
    passphrase. ``str.isprintable`` refuses those too, which is why it is not the test."""
    return any(unicodedata.category(ch) in _REFUSED for ch in text)
