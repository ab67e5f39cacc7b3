"""Parsing the ``Authorization`` header. Never raises: hostile input is just MALFORMED."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


@dataclass(frozen=True)
class BasicCredentials:
    username: str
    password: str = ""
    malformed: bool = False

    def __repr__(self) -> str:  # never show a password in a log or traceback
        return f"BasicCredentials(username={self.username!r}, malformed={self.malformed})"


MALFORMED = BasicCredentials("", malformed=True)


def parse_authorization(header: str | None) -> BasicCredentials | None:
    """``None`` when there is no header; MALFORMED for anything that is not usable Basic."""
    if header is None:
        return None
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return MALFORMED
    try:
        raw = base64.b64decode(param.strip(), validate=True)
    except (binascii.Error, ValueError):
        return MALFORMED
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")  # RFC 7617: old clients send ISO-8859-1
    username, colon, password = decoded.partition(":")
    if not colon or not username or "\x00" in decoded:
        return MALFORMED
    return BasicCredentials(username, password)


def basic_challenge(realm: str) -> str:
    escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{escaped}", charset="UTF-8"'
