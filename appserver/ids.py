"""Numeric ids from URLs, forms, query strings and JSON, checked before they reach the
database.

Every id column is an ``INTEGER``: PostgreSQL refuses a value above 2**31 - 1 with an error
(and SQLite's driver one above 2**63 - 1), which would end the request in a 500. An id
outside the range cannot name a row, so it is answered like any id that names nothing.
"""
from __future__ import annotations

import re

MAX_ID = 2**31 - 1  # the largest INTEGER on PostgreSQL (and SQLite's column affinity)
_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_id(value: object) -> int | None:
    """The id in ``value`` (ASCII digits, or an int from JSON), or None if it cannot be one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 1 <= number <= MAX_ID else None
