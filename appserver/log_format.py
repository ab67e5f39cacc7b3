"""The log line format of the ini files: a request must not be able to forge log lines.

Paths, usernames and database messages reach the log; a path may carry ``%0A`` (a newline:
a second, forged line) or ``%1B`` (a terminal escape that rewrites what an operator sees in
``journalctl``). :class:`EscapingFormatter` writes such characters as escapes in the line
itself; a traceback that follows keeps its own lines.
"""
from __future__ import annotations

import logging

#: C0 and C1 controls, DEL and the Unicode line and paragraph separators; tab is kept.
_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)) if code != 0x09
}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


class EscapingFormatter(logging.Formatter):
    """``logging.Formatter`` whose line (not its traceback) has control characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPES)
