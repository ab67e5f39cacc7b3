"""The issue's outside comparison: Django 5.2, database sessions, ``login_required``.

Run by a Python that has Django (``make benchmark-django`` makes ``.venv-django``), never by
the project's: it imports nothing of appserver. ``GET /rest/api/2/myself`` answers the
logged-in user as JSON, through Django's default middleware stack with the database session
backend, as a Django project would serve it::

    python -m benchmarks.django_app DATABASE migrate
    python -m benchmarks.django_app DATABASE seed        # prints a session key for fred
    python -m benchmarks.django_app DATABASE serve --fd N --threads T [--per-request-connections]

``DATABASE`` is a SQLite file or a ``postgresql://`` URL. Connections persist across
requests (``CONN_MAX_AGE = 600``), as a tuned production Django set-up has them; with
``--per-request-connections``, Django's own default (``CONN_MAX_AGE = 0``): a connection
opened and closed by every request.
"""
from __future__ import annotations

import argparse
import logging
import site
import socket
import sys
from urllib.parse import urlsplit

import django
from django.conf import settings

USERNAME, PASSWORD = "fred", "fred-password"


def database(value: str, conn_max_age: int) -> dict:
    if value.startswith("postgresql"):
        url = urlsplit(value.replace("+psycopg", ""))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username or "postgres",
            "PASSWORD": url.password or "",
            "HOST": url.hostname or "127.0.0.1",
            "PORT": str(url.port or 5432),
            "CONN_MAX_AGE": conn_max_age,
        }
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": value, "CONN_MAX_AGE": conn_max_age}


def configure(value: str, conn_max_age: int) -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only-" + "x" * 40,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        DATABASES={"default": database(value, conn_max_age)},
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        # startproject's stack, minus messages (no templates here).
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        USE_TZ=True,
        LOGIN_URL="/login",
    )
    django.setup()


def myself(request):
    """The project's answer, field for field (appserver.views.rest.user_json), made the way a
    Django view makes it: the same work on both sides of the ratio."""
    from urllib.parse import urlencode

    from django.http import JsonResponse
    from django.urls import reverse

    user = request.user
    return JsonResponse({
        "self": request.build_absolute_uri(reverse("user") + "?" + urlencode({"username": user.username})),
        "key": user.username.lower(),
        "name": user.username,
        "emailAddress": user.email,
        "displayName": user.get_full_name(),
        "active": user.is_active,
        "timeZone": "UTC",
        "locale": "en_US",
    })


def user(request):  # only named, for reverse(): the benchmark never requests it
    from django.http import HttpResponseNotFound

    return HttpResponseNotFound()


urlpatterns: list = []


def seed() -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = User.objects.get_or_create(
        username=USERNAME, defaults={"first_name": "Fred", "email": "fred@example.com"}
    )
    user.set_password(PASSWORD)
    user.save()
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.django_app")
    parser.add_argument("database")
    parser.add_argument("command", choices=["migrate", "seed", "serve"])
    parser.add_argument("--fd", type=int)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--site-packages", action="append", default=[],
                        help="the project interpreter's, for appserver.serve.create_server")
    parser.add_argument("--per-request-connections", action="store_true",
                        help="Django's default CONN_MAX_AGE = 0 instead of persistent connections")
    args = parser.parse_args(argv)
    configure(args.database, 0 if args.per_request_connections else 600)
    from django.contrib.auth.decorators import login_required
    from django.urls import path

    urlpatterns.append(path("rest/api/2/myself", login_required(myself)))
    urlpatterns.append(path("rest/api/2/user", login_required(user), name="user"))
    if args.command == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    elif args.command == "seed":
        print(seed())
    else:
        from django.core.wsgi import get_wsgi_application

        # Served like every other target, by appserver.serve.create_server, so that the
        # ratios compare frameworks, not servers. It imports the project's packages (Pyramid
        # among them), which are the project interpreter's: after Django's own on the path.
        for path in args.site_packages:
            site.addsitedir(path)
        from appserver.serve import create_server

        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        server = create_server(
            get_wsgi_application(), sockets=[socket.socket(fileno=args.fd)], threads=args.threads,
            ident="benchmark",
        )
        print("ready", flush=True)
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
