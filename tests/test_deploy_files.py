"""What the operator copies from deploy/ agrees with production.ini (issue 13): the body limit,
the timeouts of a graceful stop, the forwarded headers waitress trusts, and retries only for
requests that are safe to send twice. The running cluster is tested in test_deployment.py;
these are the numbers that must move together when one of them changes."""
from __future__ import annotations

import configparser
import re

from plaster import get_loader

from .support import ROOT

SITE = (ROOT / "deploy" / "nginx" / "appserver.conf").read_text()
UNIT = (ROOT / "deploy" / "systemd" / "appserver@.service").read_text()
ENV_TEMPLATE = (ROOT / "deploy" / "appserver.env.example").read_text()


def server_settings() -> dict[str, str]:
    return get_loader(str(ROOT / "production.ini"), protocols=["wsgi"]).get_settings("server:main")


def directives(name: str) -> list[str]:
    """Values of every ``name ...;`` directive of the nginx site (comments stripped)."""
    lines = [line.split("#", 1)[0] for line in SITE.splitlines()]
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^[ \t]*{re.escape(name)}[ \t]+([^;\n]*);", "\n".join(lines))]


def nginx_seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([sm]?)", value).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_production_ini_serves_with_the_graceful_runner():
    assert server_settings()["use"] == "egg:appserver#waitress"


def test_nginx_refuses_the_bodies_waitress_refuses():
    (limit,) = directives("client_max_body_size")
    assert limit == "1m" and int(server_settings()["max_request_body_size"]) == 1024 * 1024


def test_only_requests_safe_to_repeat_go_to_another_process():
    (retry,) = directives("proxy_next_upstream")
    conditions = retry.split()
    assert "error" in conditions and "timeout" in conditions
    # A POST that reached a process must never reach a second one; a 503 (the shared
    # database is down) would be the same everywhere.
    assert "non_idempotent" not in conditions and "http_503" not in conditions
    assert not directives("keepalive"), "an idle upstream connection could be closed under a POST"


def test_a_graceful_stop_fits_inside_the_proxy_and_systemd_timeouts():
    graceful = int(server_settings()["graceful_timeout"])
    (read_timeout,) = directives("proxy_read_timeout")
    assert nginx_seconds(read_timeout) > graceful
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT)
    assert int(unit["Service"]["TimeoutStopSec"]) > graceful
    assert unit["Service"]["KillSignal"] == "SIGTERM"


def test_nginx_sets_exactly_the_forwarded_headers_waitress_trusts():
    settings = server_settings()
    trusted = set(settings["trusted_proxy_headers"].split())
    set_by_nginx = {value.split()[0].lower() for value in directives("proxy_set_header")}
    assert trusted <= set_by_nginx
    # Overwritten with nginx's own view, never appended to what the client sent.
    assert "X-Forwarded-For $remote_addr" in directives("proxy_set_header")
    assert settings["trusted_proxy"] == "127.0.0.1" and settings["trusted_proxy_count"] == "1"


def test_every_upstream_process_is_a_unit_instance_on_loopback():
    assert "APPSERVER_LISTEN=127.0.0.1:%i" in UNIT
    for server in directives("server"):
        # max_fails=0: a process restarted a moment ago is never believed down (no 502).
        assert server.startswith("127.0.0.1:") and server.endswith(" max_fails=0"), server


def test_the_environment_template_names_what_production_needs():
    names = {line.split("=", 1)[0].lstrip("#") for line in ENV_TEMPLATE.splitlines() if "=" in line
             and not line.startswith("# ")}
    assert {"APPSERVER_DATABASE_URL", "APPSERVER_SECRET", "APPSERVER_ALLOWED_HOSTS"} <= names
