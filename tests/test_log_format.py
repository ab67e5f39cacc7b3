"""A request cannot forge log lines: control characters that reach a log line (a path with
``%0A`` or ``%1B``) are written as escapes, in every ini file the project ships."""
from __future__ import annotations

import configparser
import logging
import sys
from pathlib import Path

import pytest
from pyramid.path import DottedNameResolver

from appserver.log_format import EscapingFormatter

ROOT = Path(__file__).resolve().parent.parent
FORMAT = "%(levelname)s [%(name)s] %(message)s"


def record(message: str, *args: object, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("appserver.views.errors", logging.ERROR, __file__, 1, message, args, exc_info)


def test_a_path_with_a_newline_and_an_escape_stays_on_one_line():
    path = "/rest/api/2/x\n2026-11-30 ERROR [appserver] admin logged in\x1b[2K\r\u2028\x9b"
    line = EscapingFormatter(FORMAT).format(record("unhandled error on %s %s", "GET", path))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\u2028" not in line and "\x9b" not in line
    assert line == (
        "ERROR [appserver.views.errors] unhandled error on GET /rest/api/2/x\\n2026-11-30 ERROR "
        "[appserver] admin logged in\\x1b[2K\\r\\u2028\\x9b"
    )


def test_tabs_and_other_text_are_kept():
    line = EscapingFormatter(FORMAT).format(record("user %s\tfrom %s", "Jörg 用户", "10.0.0.1"))
    assert line.endswith("user Jörg 用户\tfrom 10.0.0.1")


def test_a_traceback_keeps_its_lines_after_the_escaped_one():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    text = EscapingFormatter(FORMAT).format(record("failed on %s", "/a\nb", exc_info=exc_info))
    first, *rest = text.split("\n")
    assert first.endswith("failed on /a\\nb")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


@pytest.mark.parametrize("name", ["development.ini", "production.ini"])
def test_the_shipped_ini_files_use_it(name):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / name)
    dotted = parser["formatter_generic"]["class"]
    assert DottedNameResolver().resolve(dotted) is EscapingFormatter


def test_a_repeated_warning_is_logged_at_a_bounded_rate(caplog):
    """One line per 503 while the database was down: 12,600 in a 15-second outage."""
    from appserver.repeated_warning import RepeatedWarning

    now = [100.0]
    repeated = RepeatedWarning(logging.getLogger("appserver.test"), interval=5, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="appserver.test"):
        for _ in range(1000):
            repeated.warning("refused", "database unavailable: %s", "refused")
        repeated.warning("lock", "database unavailable: %s", "a lock")  # another kind: its own line
        now[0] += 5
        repeated.warning("refused", "database unavailable: %s", "still refused")
        now[0] += 60
        repeated.warning("refused", "database unavailable: %s", "again")
    assert [r.getMessage() for r in caplog.records] == [
        "database unavailable: refused",
        "database unavailable: a lock",
        "database unavailable: still refused (and 999 more since the last such line)",
        "database unavailable: again",
    ]
