"""Typed, validated application settings.

Every ``appserver.*`` setting is parsed once at start-up into :class:`AppSettings`, so a bad
value stops the server with a message naming the setting instead of failing on some later
request.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pyramid.config import Configurator
from pyramid.settings import aslist, asbool
from sqlalchemy.engine import make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .hosts import HostPattern, InvalidHost, parse_host_pattern

T = TypeVar("T")

#: Environment variables that override a setting (Warehouse's pattern): deployments keep
#: secrets out of ini files.
ENVIRONMENT_OVERRIDES = {
    "sqlalchemy.url": "APPSERVER_DATABASE_URL",
    "appserver.secret": "APPSERVER_SECRET",
    "appserver.allowed_hosts": "APPSERVER_ALLOWED_HOSTS",
    "appserver.process_header": "APPSERVER_PROCESS_HEADER",
}

MIN_SECRET_LENGTH = 32
#: A secret with fewer different characters is no random value (a repeated letter, a word
#: typed in): 32 random URL-safe characters hold 25 different ones on average.
MIN_SECRET_DISTINCT = 10
#: The placeholder of deploy/appserver.env.example: an operator who forgot to replace it would
#: key the CSRF tokens with a value anyone can read.
SECRET_PLACEHOLDER = "change-me"
TOKEN_NAME_COLUMN_LENGTH = 255  # personal_tokens.name


class ConfigurationError(ValueError):
    """A setting is missing or has a value the application cannot use."""


@dataclass(frozen=True)
class AppSettings:
    secret: str
    cookie_name: str
    secure_cookies: bool
    idle_timeout: int
    max_age: int
    touch_interval: int
    rest_prefix: str
    rest_cookie_rule: bool
    os_authtype: bool
    basic_realm: str
    max_failures: int
    max_failures_per_hour: int
    lockout_seconds: int
    max_lockout_seconds: int
    remember_cookie_name: str
    remember_max_age: int
    min_password_length: int
    min_password_strength: int
    max_password_bytes: int
    max_concurrent_hashes: int
    credential_cache_size: int
    purge_batch_size: int
    allowed_hosts: tuple[HostPattern, ...]
    jql_max_length: int
    jql_max_terms: int
    search_statement_timeout: int
    lock_timeout: int
    idle_in_transaction_timeout: int
    connect_timeout: int
    network_timeout: int
    audit_retention_days: int
    audit_collapse_seconds: int
    process_header: bool
    token_name_max_length: int
    tokens_per_user: int
    token_max_expiry_days: int
    tokens_without_expiry: bool
    websudo_enabled: bool
    websudo_timeout: int
    show_demo_users: bool

    @property
    def session_cookie(self) -> str:
        """The cookie's real name: ``__Host-`` binds a Secure cookie to this exact host."""
        return f"__Host-{self.cookie_name}" if self.secure_cookies else self.cookie_name

    @property
    def remember_cookie(self) -> str:
        return f"__Host-{self.remember_cookie_name}" if self.secure_cookies else self.remember_cookie_name


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigurationError(f"{name}: expected a whole number, got {value!r}") from None
        if number < minimum:
            raise ConfigurationError(f"{name}: must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise ConfigurationError(f"{name}: must be at most {maximum}, got {number}")
        return number

    return parse


def _boolean(name: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text not in {"true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n"}:
        raise ConfigurationError(f"{name}: expected true or false, got {value!r}")
    return asbool(text)


def _text(name: str, value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ConfigurationError(f"{name}: must not be empty")
    return text


def _realm(name: str, value: Any) -> str:
    """Sent in every Basic challenge: header values must be printable ASCII to be portable."""
    text = _text(name, value)
    if not (text.isascii() and text.isprintable()):
        raise ConfigurationError(f"{name}: use printable ASCII characters only, got {value!r}")
    return text


def _cookie_name(name: str, value: Any) -> str:
    text = _text(name, value)
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not set(text) <= allowed:
        raise ConfigurationError(f"{name}: use only letters, digits, '.', '_' and '-', got {value!r}")
    return text


def _prefix(name: str, value: Any) -> str:
    text = _text(name, value)
    # ASCII: it is compared with the raw WSGI path (appserver.errors.is_rest).
    if not text.startswith("/") or text == "/" or text.endswith("/") or not text.isascii():
        raise ConfigurationError(f"{name}: expected an ASCII path like /rest, got {value!r}")
    return text


def _secret(name: str, value: Any) -> str:
    text = str(value or "").strip()
    if not text:
        raise ConfigurationError(
            f"{name} is not set: set the APPSERVER_SECRET environment variable "
            f"(at least {MIN_SECRET_LENGTH} characters)"
        )
    if len(text) < MIN_SECRET_LENGTH:
        raise ConfigurationError(f"{name}: must be at least {MIN_SECRET_LENGTH} characters long")
    if SECRET_PLACEHOLDER in text.lower() or len(set(text)) < MIN_SECRET_DISTINCT:
        raise ConfigurationError(
            f"{name}: must be a random value, not a placeholder or a word: make one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return text


def _allowed_hosts(name: str, value: Any) -> tuple[HostPattern, ...]:
    entries = str(value or "").replace(",", " ").split()
    if not entries:
        raise ConfigurationError(
            f"{name} is not set: set the APPSERVER_ALLOWED_HOSTS environment variable to the "
            "names this server answers to, e.g. 'jira.example.com'"
        )
    try:
        return tuple(parse_host_pattern(entry) for entry in entries)
    except InvalidHost as error:
        raise ConfigurationError(f"{name}: {error}") from None


#: setting name -> (field, parser, default). docs/configuration.md's table mirrors this
#: (tests/test_docs.py compares them).
SCHEMA: dict[str, tuple[str, Callable[[str, Any], Any], Any]] = {
    "appserver.secret": ("secret", _secret, None),
    "appserver.session.cookie_name": ("cookie_name", _cookie_name, "appserver.session"),
    "appserver.session.secure": ("secure_cookies", _boolean, "true"),
    "appserver.session.idle_timeout": ("idle_timeout", _integer(1), 1800),
    "appserver.session.max_age": ("max_age", _integer(1), 43200),
    "appserver.session.touch_interval": ("touch_interval", _integer(0), 60),
    "appserver.rest_prefix": ("rest_prefix", _prefix, "/rest"),
    "appserver.rest_cookie_rule": ("rest_cookie_rule", _boolean, "true"),
    "appserver.os_authtype": ("os_authtype", _boolean, "true"),
    "appserver.basic_realm": ("basic_realm", _realm, "appserver"),
    "appserver.login.max_failures": ("max_failures", _integer(1), 3),
    # Failed logins of one account in an hour, whatever right passwords come in between
    # (which start max_failures' count again): then locked until the hour is over.
    "appserver.login.max_failures_per_hour": ("max_failures_per_hour", _integer(1), 30),
    "appserver.login.lockout_seconds": ("lockout_seconds", _integer(1), 60),
    # The cap on the doubling cool-down: longer resists guessing better, but anyone who knows a
    # name can keep that account locked with one wrong login per cool-down (docs/concurrency.md).
    "appserver.login.max_lockout_seconds": ("max_lockout_seconds", _integer(1), 900),
    "appserver.remember.cookie_name": ("remember_cookie_name", _cookie_name, "appserver.remember"),
    "appserver.remember.max_age": ("remember_max_age", _integer(60), 14 * 24 * 3600),
    # ASVS 4.0.3 2.1.1: at least 12 characters (NIST SP 800-63B's floor is 8).
    "appserver.password.min_length": ("min_password_length", _integer(8), 12),
    # zxcvbn's score a new password needs, 0-4 (0: no estimate): security/password_policy.py.
    "appserver.password.min_strength": ("min_password_strength", _integer(0, 4), 2),
    "appserver.password.max_bytes": ("max_password_bytes", _integer(8), 1024),
    "appserver.password.max_concurrent_hashes": ("max_concurrent_hashes", _integer(1), 4),
    # Verified credentials kept per process so HTTP Basic skips argon2 (0: off).
    "appserver.basic.credential_cache_size": ("credential_cache_size", _integer(0), 1024),
    "appserver.purge.batch_size": ("purge_batch_size", _integer(1), 1000),
    # The loopback names on any port: development and tests. production.ini requires the
    # real names (APPSERVER_ALLOWED_HOSTS).
    "appserver.allowed_hosts": ("allowed_hosts", _allowed_hosts, "localhost 127.0.0.1 [::1]"),
    "appserver.jql.max_length": ("jql_max_length", _integer(1), 2000),
    "appserver.jql.max_terms": ("jql_max_terms", _integer(1), 20),
    "appserver.search.statement_timeout": ("search_statement_timeout", _integer(0), 5000),
    # PostgreSQL: the longest a statement waits for a lock, in ms (SQLite waits 10 s for its
    # write lock); a forgotten open transaction then costs 503s, not every worker thread.
    "appserver.database.lock_timeout": ("lock_timeout", _integer(0), 10000),
    # PostgreSQL: a transaction idle this long, in ms, is ended by the server: a process that
    # froze (SIGSTOP, swapping) with an account's row locked does not lock that account
    # everywhere until it is killed.
    "appserver.database.idle_in_transaction_timeout": ("idle_in_transaction_timeout", _integer(0), 30000),
    # PostgreSQL: seconds to wait for a connection, and for a server that stopped answering
    # (a failover that moved the address, a host gone): no TCP reset comes, and without a
    # limit a request waits for the kernel's timeout, which is minutes (0: no limit).
    "appserver.database.connect_timeout": ("connect_timeout", _integer(0), 5),
    "appserver.database.network_timeout": ("network_timeout", _integer(0), 15),
    "appserver.audit.retention_days": ("audit_retention_days", _integer(1), 90),
    "appserver.audit.collapse_seconds": ("audit_collapse_seconds", _integer(0), 600),
    "appserver.process_header": ("process_header", _boolean, "false"),
    # Personal access tokens: Jira's atlassian.pats.* defaults.
    "appserver.tokens.name_max_length": ("token_name_max_length", _integer(1), 40),
    "appserver.tokens.max_per_user": ("tokens_per_user", _integer(1), 10),
    "appserver.tokens.max_expiry_days": ("token_max_expiry_days", _integer(1), 365),
    "appserver.tokens.allow_no_expiry": ("tokens_without_expiry", _boolean, "false"),
    # WebSudo: Jira's jira.websudo.timeout (rolling) and jira.websudo.is.disabled.
    "appserver.websudo.enabled": ("websudo_enabled", _boolean, "true"),
    "appserver.websudo.timeout": ("websudo_timeout", _integer(1), 600),
    "appserver.login.show_demo_users": ("show_demo_users", _boolean, "false"),
}

#: ``appserver.*`` keys that code hands in, never an ini file (tests inject an engine, a
#: frozen clock and a cheaper password hash); every other ``appserver.*`` key must be in SCHEMA.
INTERNAL_SETTINGS = frozenset(
    {"appserver.dbengine", "appserver.clock", "appserver.password_context"}
)


def check_known(settings: Mapping[str, Any]) -> None:
    """A misspelt setting would silently keep its default: refuse it, naming the closest
    real one. Derived from SCHEMA, so every setting added there is known here."""
    for name in sorted(settings):
        if not name.startswith("appserver.") or name in SCHEMA or name in INTERNAL_SETTINGS:
            continue
        # Compared without the prefix they all share, which would make any two look alike.
        known = {key.removeprefix("appserver."): key for key in SCHEMA}
        close = difflib.get_close_matches(name.removeprefix("appserver."), known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {known[close[0]]}?" if close else "the settings are listed in docs/configuration.md"
        )
        raise ConfigurationError(f"{name}: unknown setting; {hint}")


def apply_environment(settings: MutableMapping[str, Any], environ: Mapping[str, str] = os.environ) -> None:
    """Let the environment override the settings that hold secrets or addresses."""
    for setting, variable in ENVIRONMENT_OVERRIDES.items():
        if environ.get(variable):
            settings[setting] = environ[variable]


def setting(settings: Mapping[str, Any], name: str) -> Any:
    """One setting, parsed as :func:`parse_settings` does: for code that runs before the
    rest are parsed, or without them (the engine of the command line and migrations)."""
    _, parse, default = SCHEMA[name]
    return parse(name, settings.get(name, default))


#: What SQLAlchemy's isolation_level takes (AUTOCOMMIT besides the SQL standard's four).
ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT")


def check_framework_settings(settings: Mapping[str, Any]) -> None:
    """The settings of the libraries this project configures from the same ini section, whose
    own parsing of a bad value is a traceback (pyramid, pyramid_retry, SQLAlchemy's engine
    options): checked first, one line each. ``pyramid.includes`` is imported by the
    Configurator itself, before any ``includeme`` runs, so :func:`appserver.startup.app_factory`
    calls this before building the application too."""
    for name in aslist(settings.get("pyramid.includes", "")):
        module, _, attribute = name.partition(":")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a parent package missing, an empty name
            found = None
        if found is None:
            raise ConfigurationError(
                f"pyramid.includes: no module named {module!r}: check the spelling, or install it "
                "into this virtualenv"
            )
        # What Configurator.include calls: the module's includeme, or the one named after ":".
        if not callable(getattr(importlib.import_module(module), attribute or "includeme", None)):
            raise ConfigurationError(
                f"pyramid.includes: {module!r} has no {attribute or 'includeme'}(config): it is not a "
                "Pyramid add-on"
            )
    attempts = settings.get("retry.attempts")
    if attempts is not None and not (str(attempts).strip().isdigit() and int(attempts) >= 1):
        raise ConfigurationError(f"retry.attempts: expected a whole number of 1 or more, got {attempts!r}")
    for option, coerce in DefaultDialect.engine_config_types.items():
        value = settings.get("sqlalchemy." + option)
        if isinstance(value, str):
            try:
                coerce(value)
            except ValueError:
                expected = ("a whole number" if option.startswith(("pool", "max")) else
                            "true, false or debug" if option.startswith("echo") else "true or false")
                raise ConfigurationError(f"sqlalchemy.{option}: expected {expected}, got {value!r}") from None
    level = settings.get("sqlalchemy.isolation_level")
    if level is not None and str(level).strip().upper() not in ISOLATION_LEVELS:
        raise ConfigurationError(
            f"sqlalchemy.isolation_level: expected one of {', '.join(ISOLATION_LEVELS)}, got {level!r}")
    if isinstance(settings.get("sqlalchemy.connect_args"), str):
        raise ConfigurationError(
            "sqlalchemy.connect_args: not a setting for an ini file (it is a dictionary); give the "
            "driver's parameters in the URL's query, postgresql+psycopg://HOST/NAME?sslmode=require")


def parse_settings(settings: Mapping[str, Any]) -> AppSettings:
    check_known(settings)
    check_framework_settings(settings)
    values = {}
    for name, (field, parse, default) in SCHEMA.items():
        raw = settings.get(name, default)
        values[field] = parse(name, raw)
    parsed = AppSettings(**values)
    if parsed.touch_interval >= parsed.idle_timeout:
        # A session is touched at most once a touch interval: one as long as the idle
        # timeout would let a session in steady use idle out between two touches.
        raise ConfigurationError(
            f"appserver.session.touch_interval: must be shorter than appserver.session.idle_timeout "
            f"({parsed.touch_interval} >= {parsed.idle_timeout}); a tenth of it or less keeps the "
            f"idle timeout exact to 10 %, e.g. {parsed.idle_timeout // 10}"
        )
    if parsed.max_lockout_seconds < parsed.lockout_seconds:
        raise ConfigurationError(
            "appserver.login.max_lockout_seconds: must not be shorter than appserver.login.lockout_seconds "
            f"({parsed.max_lockout_seconds} < {parsed.lockout_seconds}): set it to "
            f"{parsed.lockout_seconds} or more"
        )
    if parsed.min_password_length * 4 > parsed.max_password_bytes:
        # A character takes up to four bytes in UTF-8: every password long enough must fit.
        raise ConfigurationError(
            "appserver.password.max_bytes: must be at least four times appserver.password.min_length "
            f"({parsed.max_password_bytes} < 4 x {parsed.min_password_length}), or some passwords "
            "long enough would be refused as too long"
        )
    if parsed.token_name_max_length > TOKEN_NAME_COLUMN_LENGTH:
        raise ConfigurationError(
            f"appserver.tokens.name_max_length: must be at most {TOKEN_NAME_COLUMN_LENGTH}"
        )
    if parsed.show_demo_users and parsed.secure_cookies:
        raise ConfigurationError(
            "appserver.login.show_demo_users: only for development (with "
            "appserver.session.secure = false); production never lists accounts"
        )
    if parsed.secure_cookies and "pyramid_debugtoolbar" in aslist(settings.get("pyramid.includes", "")):
        # Its pages show recent requests' headers (cookies, Authorization) and its debugger
        # runs code, for whoever debugtoolbar.hosts lets in: every local user, at least.
        raise ConfigurationError(
            "pyramid.includes: pyramid_debugtoolbar is only for development (with "
            "appserver.session.secure = false); remove it from production's ini file"
        )
    if not settings.get("sqlalchemy.url"):
        raise ConfigurationError(
            "sqlalchemy.url is not set: set it in the ini file or APPSERVER_DATABASE_URL"
        )
    check_database_url(str(settings["sqlalchemy.url"]))
    return parsed


_URL_SETTING = "sqlalchemy.url (or APPSERVER_DATABASE_URL)"
#: What a URL of each database this project supports looks like.
URL_EXAMPLES = "sqlite:///PATH or postgresql+psycopg://USER@HOST/NAME"


def check_database_url(value: str) -> None:
    """A URL that SQLAlchemy reads, of a database whose driver is installed: otherwise one
    line now, instead of a traceback from the first ``create_engine``. ``postgresql://``,
    which most people write first, means psycopg2 to SQLAlchemy; this project installs
    psycopg 3. Nothing of the URL but its scheme is repeated (it may hold a password)."""
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigurationError(f"{_URL_SETTING}: not a database URL; write {URL_EXAMPLES}") from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ConfigurationError(
            f"{_URL_SETTING}: unknown database {url.drivername!r}; write {URL_EXAMPLES}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        hint = (
            "; this project installs psycopg (version 3): write postgresql+psycopg://..."
            if url.get_backend_name() == "postgresql"
            else f"; write {URL_EXAMPLES}"
        )
        raise ConfigurationError(
            f"{_URL_SETTING}: {url.drivername}:// needs the driver {error.name or 'module'}, which is not "
            f"installed{hint}"
        ) from None


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    apply_environment(settings)
    config.registry.appserver_settings = parse_settings(settings)
    config.add_request_method(
        lambda request: request.registry.appserver_settings, "appserver_settings", reify=True
    )
