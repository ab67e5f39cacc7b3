"""The logging sections of the ini files the tests write for real servers and commands:
everything from WARN up, on stderr, where the test reads it."""
from __future__ import annotations


def logging_sections(line_format: str) -> str:
    return f"""\
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
class = appserver.log_format.EscapingFormatter
format = {line_format}
"""
