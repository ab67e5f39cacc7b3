"""``appserver CONFIG_URI COMMAND``: set up the database and manage accounts and sessions."""
from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import transaction
from alembic import command
from alembic.config import Config as AlembicConfig
from pyramid.scripting import prepare
from sqlalchemy.orm import Session

from .. import startup
from ..demo import ensure_user, seed_demo
from ..models import DATABASE_UNAVAILABLE, User, get_engine, is_transient
from ..security import accounts, audit, personal_tokens
from ..security.accounts import AccountError
from ..security.audit import Event
from ..security.login import find_user, purge_throttles
from ..security.passwords import PasswordTooLong
from ..security.personal_tokens import TokenRequestError
from ..settings import ConfigurationError, apply_environment, parse_settings


T = TypeVar("T")


class CommandError(Exception):
    """A problem with the command's input: printed without a traceback, exit status 1."""


def read_password(stdin=None, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """From standard input when it is not a terminal (scripts), else prompted twice."""
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        password = stdin.readline().rstrip("\r\n")
    else:
        password = prompt("Password: ")
        if prompt("Password (again): ") != password:
            raise CommandError("the passwords do not match")
    if not password:
        raise CommandError("the password must not be empty")
    return password


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def migrate(config_uri: str) -> None:
    path = startup.ini_path(config_uri)
    alembic_config = AlembicConfig(path)
    command.upgrade(alembic_config, "head")


def app_settings(config_uri: str) -> dict[str, Any]:
    """The ``[app:main]`` settings with the environment's overrides, checked: a bad or
    unknown setting is a one-line error before anything connects."""
    settings = startup.app_ini_settings(config_uri)
    apply_environment(settings)
    parse_settings(settings)
    return settings


def require_database(config_uri: str, *, migrated: bool = True) -> None:
    """The database answers (and, for every command but initdb, is migrated): else one line
    that says what to do, before a command half-runs."""
    settings = app_settings(config_uri)
    engine = get_engine(settings)
    try:
        if migrated:
            problem = startup.database_status(engine, config_uri)
        else:
            try:
                with engine.connect():
                    problem = None
            except DATABASE_UNAVAILABLE as error:
                problem = startup.database_problem(error, engine.url)
    finally:
        engine.dispose()
    if problem is not None:
        raise CommandError(problem)


@contextmanager
def writing_env(config_uri: str) -> Iterator[dict[str, Any]]:
    """bootstrap's environment, with a request that writes: bootstrap makes a GET, whose
    transaction on SQLite begins without the write lock and, having read, cannot take it
    if the server wrote meanwhile ("database is locked" at once, whatever the busy timeout).
    As a POST it begins with the lock (BEGIN IMMEDIATE) and waits its turn."""
    path, _, name = config_uri.partition("#")
    app = startup.ini_loader(path).get_wsgi_app(name or None)
    with prepare(registry=app.registry) as env:  # pyramid.paster.bootstrap, its loader kept
        env["app"] = app
        env["request"].method = "POST"  # before request.dbsession: the writer's binding
        yield env


@contextmanager
def app_env(config_uri: str) -> Iterator[dict[str, Any]]:
    """One transaction, committed when the command succeeds. Ask for anything typed (a
    password) before the first query: on SQLite the write lock is held from then on."""
    require_database(config_uri)
    with writing_env(config_uri) as env:
        request = env["request"]
        with request.tm:
            yield env


def cmd_initdb(args: argparse.Namespace) -> None:
    problem = startup.migrations_problem(startup.config_file(args.config_uri))
    if problem is not None:  # before connecting: SQLite would make an empty file
        raise CommandError(problem)
    require_database(args.config_uri, migrated=False)
    engine = get_engine(app_settings(args.config_uri))
    try:
        newer = startup.newer_revision(engine, args.config_uri)
    finally:
        engine.dispose()
    if newer is not None:
        raise CommandError(
            f"the database is at revision {newer}, which this code does not know: a newer release "
            f"migrated it (this one goes up to {startup.head_revision(startup.config_file(args.config_uri))}). "
            "Nothing was changed; run that release's initdb. This release's servers and commands "
            "keep working with it (docs/deployment.md, \"Rolling back a release\")"
        )
    migrate(args.config_uri)
    print("database migrated to the latest revision")
    if args.demo:
        with app_env(args.config_uri) as env:
            for line in seed_demo(env["request"]):
                print(line)


def _new_user_fields(args: argparse.Namespace) -> tuple[str, str, str]:
    """The username, display name and email address as stored, checked before anything is
    asked or connected (a typed password is not wasted on a bad name)."""
    try:
        username = accounts.validate_username(args.username.strip())
    except AccountError as error:
        raise CommandError(f"invalid username {args.username[:300]!r}: {error}") from None
    try:
        display_name, email = accounts.validate_profile(args.display_name or "", args.email or "")
    except AccountError as error:
        option = "--display-name" if error.field == "display_name" else "--email"
        raise CommandError(f"invalid {option}: {error}") from None
    return username, display_name or username, email


def _create_user(request, args: argparse.Namespace, password: str) -> User:
    username, display_name, email = _new_user_fields(args)
    user, created = ensure_user(request, username, password, display_name, email, args.admin)
    if not created:
        raise CommandError(f"user {username!r} already exists")
    audit.record(request, Event.USER_CREATED, user, "by command line")
    return user


def _existing_user(request, username: str) -> User:
    user = find_user(request, username)
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


def cmd_create_user(args: argparse.Namespace) -> None:
    _new_user_fields(args)
    with app_env(args.config_uri) as env:  # the database first: then ask for a password
        user = _create_user(env["request"], args, read_password())
        print(f"created user {user.username!r}{' (administrator)' if user.admin else ''}")


def cmd_set_password(args: argparse.Namespace) -> None:
    with app_env(args.config_uri) as env:
        request = env["request"]
        password = read_password()
        user = _existing_user(request, args.username)
        reset = accounts.reset_password(request, user, password, by="command line")
        print(f"password changed for {user.username!r}; {reset.revoked} session(s) revoked"
              + ("; the lock-out after failed logins ended" if reset.unlocked else ""))


def cmd_revoke_sessions(args: argparse.Namespace) -> None:
    with app_env(args.config_uri) as env:
        request = env["request"]
        user = _existing_user(request, args.username)
        revoked = accounts.revoke_sessions(request, user, everywhere=True, by="command line")
        print(
            f"{revoked} session(s) of {user.username!r} revoked, remembered logins forgotten, "
            "personal access tokens revoked"
        )


def cmd_create_token(args: argparse.Namespace) -> None:
    """Prints the raw token alone on standard output, so a script can capture it."""
    with app_env(args.config_uri) as env:
        request = env["request"]
        user = _existing_user(request, args.username)
        if not user.active:
            raise CommandError(f"{user.username!r} is deactivated: activate the account first")
        try:
            issued = personal_tokens.create(request, user, args.name, args.expires_days, by="command line")
        except TokenRequestError as error:
            if error.field == "expirationDuration":  # say it in the command's own words
                allowed = request.appserver_settings.token_max_expiry_days
                raise CommandError(
                    f"--expires-days {args.expires_days}: give a whole number of days from 1 to {allowed}"
                    if args.expires_days is not None
                    else f"give --expires-days N (1 to {allowed}): tokens without an expiry date are "
                    "not allowed here (appserver.tokens.allow_no_expiry)"
                ) from None
            raise CommandError(str(error)) from None
        raw = issued.raw
    print(raw)


def cmd_revoke_tokens(args: argparse.Namespace) -> None:
    with app_env(args.config_uri) as env:
        request = env["request"]
        user = _existing_user(request, args.username)
        revoked = personal_tokens.revoke_all(request, user, by="command line")
        print(f"{revoked} personal access token(s) of {user.username!r} revoked")


def cmd_unlock(args: argparse.Namespace) -> None:
    with app_env(args.config_uri) as env:
        request = env["request"]
        user = _existing_user(request, args.username)
        accounts.unlock(request, user, by="command line")
        print(f"{user.username!r} unlocked: the next login is checked normally")


def _committed(request: Any, work: Callable[[], T], attempts: int = 3) -> T:
    """``work`` in a transaction of its own, committed; run again after a transient error
    (SQLite busy, a deadlock with a request revoking the same rows, a connection the
    database dropped), as pyramid_retry runs a request again: a purge started by a timer
    must not stop half-way for what would not happen a moment later."""
    for attempt in range(1, attempts + 1):
        try:
            with request.tm:
                return work()
        except Exception as error:
            if attempt == attempts or not is_transient(error):
                raise
    raise AssertionError("unreachable")


def _in_batches(request: Any, purge: Callable[[int], tuple[int, int]], batch: int) -> int:
    """Run ``purge(after)`` -> (deleted, next after), one committed batch at a time, until a
    batch comes back short; the total deleted."""
    total, after = 0, 0
    while True:
        deleted, after = _committed(request, lambda: purge(after))
        total += deleted
        if deleted < batch:
            return total


def cmd_purge_sessions(args: argparse.Namespace) -> None:
    """Sessions, remember-me tokens, personal access tokens and stale failure counts of
    unknown names, each in batches committed one by one, so a large purge never holds long
    locks, and each run again after a transient error."""
    require_database(args.config_uri)
    with writing_env(args.config_uri) as env:
        request = env["request"]
        batch = args.batch_size or request.appserver_settings.purge_batch_size
        for label, purge in (
            ("session(s)", lambda after: request.session_store.purge_batch(batch, after=after)),
            ("remember-me token(s)", lambda after: (request.remember_store.purge_batch(batch), 0)),
            ("personal access token(s)", lambda after: (request.token_store.purge_batch(batch), 0)),
            ("failure count(s) of unknown names", lambda after: (purge_throttles(request, batch), 0)),
        ):
            total = _in_batches(request, purge, batch)
            print(f"{total} expired or revoked {label} purged")


def cmd_purge_events(args: argparse.Namespace) -> None:
    """Audit events older than ``appserver.audit.retention_days``, in batches committed one
    by one like purge-sessions."""
    require_database(args.config_uri)
    with writing_env(args.config_uri) as env:
        request = env["request"]
        settings = request.appserver_settings
        batch = args.batch_size or settings.purge_batch_size
        total = _in_batches(request, lambda after: (audit.purge_batch(request, batch), 0), batch)
        print(f"{total} audit event(s) older than {settings.audit_retention_days} days purged")


def build_parser() -> argparse.ArgumentParser:
    # Plain text: the module's docstring is reStructuredText (``literals``), which --help
    # would print as it stands.
    parser = argparse.ArgumentParser(
        prog="appserver",
        description="Set up the database and manage accounts, sessions and personal access tokens.",
        epilog="For example: appserver development.ini initdb --demo. A command's own options: "
        "appserver development.ini COMMAND --help.",
    )
    parser.add_argument("config_uri", help="the ini file, e.g. development.ini")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    initdb = commands.add_parser("initdb", help="migrate the database to the latest revision")
    initdb.add_argument("--demo", action="store_true", help="add the demo users and data (idempotent)")
    initdb.set_defaults(func=cmd_initdb)

    create = commands.add_parser("create-user", help="create a user (password from stdin or a prompt)")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true")
    create.add_argument("--display-name")
    create.add_argument("--email")
    create.set_defaults(func=cmd_create_user)

    setpw = commands.add_parser("set-password", help="set a user's password; revokes their sessions")
    setpw.add_argument("username")
    setpw.set_defaults(func=cmd_set_password)

    revoke = commands.add_parser(
        "revoke-sessions", help="log a user out everywhere (sessions, remember-me, tokens)"
    )
    revoke.add_argument("username")
    revoke.set_defaults(func=cmd_revoke_sessions)

    token = commands.add_parser(
        "create-token", help="create a personal access token for a user; prints only the token"
    )
    token.add_argument("username")
    token.add_argument("name", help="what the token is for, e.g. 'CI pipeline'")
    token.add_argument("--expires-days", type=int, default=None, metavar="N",
                       help="days until it expires (required unless tokens without expiry are allowed)")
    token.set_defaults(func=cmd_create_token)

    revoke_tokens = commands.add_parser("revoke-tokens", help="revoke every personal access token of a user")
    revoke_tokens.add_argument("username")
    revoke_tokens.set_defaults(func=cmd_revoke_tokens)

    unlock = commands.add_parser("unlock", help="end a user's lock-out after failed logins now")
    unlock.add_argument("username")
    unlock.set_defaults(func=cmd_unlock)

    purge = commands.add_parser("purge-sessions", help="delete expired and revoked sessions in batches")
    purge.add_argument("--batch-size", type=positive, default=None)
    purge.set_defaults(func=cmd_purge_sessions)

    events = commands.add_parser(
        "purge-events", help="delete audit events older than appserver.audit.retention_days"
    )
    events.add_argument("--batch-size", type=positive, default=None)
    events.set_defaults(func=cmd_purge_events)

    check = commands.add_parser(
        "check", help="check the settings, the database and that the server's address is free"
    )
    check.add_argument("--port", type=int, default=None, help="the port make run PORT=N serves on")
    check.add_argument("--no-database", action="store_true", help="leave the database out")
    check.set_defaults(func=cmd_check)
    return parser


def cmd_check(args: argparse.Namespace) -> None:
    """What ``pserve`` needs, checked before it starts: ``make run`` calls this first."""
    settings = app_settings(args.config_uri)
    get_engine(settings).dispose()  # SQLAlchemy's options, checked without connecting
    server = startup.listen_settings(startup.server_ini_settings(args.config_uri), args.port)
    startup.check_free(server)
    addresses = ", ".join(startup.display(a[3]) for a in startup.listen_addresses(server))
    if not args.no_database:
        require_database(args.config_uri)
    checked = "settings" if args.no_database else "settings, database"
    print(f"{args.config_uri}: {checked} and {addresses} ready")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        startup.app_ini_settings(args.config_uri)  # an ini file with the app's section, first
        startup.ini_loader(startup.ini_path(args.config_uri)).setup_logging()
        args.func(args)
    except (CommandError, PasswordTooLong, AccountError, startup.StartupError) as error:
        return fail(error)
    except ConfigurationError as error:
        return fail(f"{startup.ini_path(args.config_uri)}: {error}")
    except DATABASE_UNAVAILABLE as error:  # checked before, so it failed while the command ran
        url = app_settings(args.config_uri).get("sqlalchemy.url")
        if getattr(getattr(error, "orig", None), "sqlstate", None) == "55P03":  # a lock wait: whose?
            problem = startup.database_problem(error, url)
        else:
            problem = f"the database {startup.safe_url(url)} failed: {startup.first_line(error)}"
        if args.func is cmd_initdb:  # every migration in one transaction: nothing half-done
            problem += "; nothing was changed"
        return fail(problem)
    except SystemExit as error:  # the app factory's one line (it is pserve's too)
        if isinstance(error.code, str):
            return fail(error.code)
        raise
    return 0


def fail(message: object) -> int:
    print(f"appserver: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
