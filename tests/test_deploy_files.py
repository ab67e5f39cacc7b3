"""What the operator copies from deploy/ agrees with production.ini (issue 13): the body limit,
the timeouts of a graceful stop, the forwarded headers waitress trusts, and retries only for
requests that are safe to send twice. The running cluster is tested in test_deployment.py;
these are the numbers that must move together when one of them changes."""
from __future__ import annotations

import configparser
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from plaster import get_loader
from waitress.adjustments import Adjustments

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
    assert values(https_server(), "client_max_body_size") == [["1m"]]
    assert int(server_settings()["max_request_body_size"]) == 1024 * 1024
    # Only nginx's error pages, where a refused body is being discarded, take any size:
    # there the 1m limit turned HTTP/2's 413 into nginx's own HTML page.
    (errors,) = [children for _, args, children in blocks(https_server(), "location") if args == ["^~", "/_errors/"]]
    assert values(errors, "client_max_body_size") == [["0"]] and values(errors, "internal") == [[]]


def test_only_requests_safe_to_repeat_go_to_another_process():
    retry, written = directives("proxy_next_upstream")  # the server's, then @written's
    conditions = retry.split()
    assert "error" in conditions and "timeout" in conditions
    # A GET meeting a process that cannot reach the database (503) goes on to another one.
    assert "http_503" in conditions
    # A POST that reached a process must never reach a second one; nor a PUT or DELETE
    # answered 503 (its COMMIT may be in doubt): they go through @written.
    assert "non_idempotent" not in conditions
    assert written.split() == ["error", "timeout"]
    assert "if ($request_method !~ ^(GET|HEAD)$)" in SITE and "418 = @written" in directives("error_page")
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


def test_every_upstream_process_is_a_unit_instance_on_its_socket():
    """nginx reaches each process over the socket the unit names after its instance, never a
    TCP port (where any local user could forge X-Forwarded-*)."""
    unit = systemd_unit(SYSTEMD / "appserver@.service")["Service"]
    assert "APPSERVER_LISTEN=unix:/run/appserver/%i.sock" in unit["Environment"]
    assert unit["RuntimeDirectory"] == ["appserver"] and unit["RuntimeDirectoryMode"] == ["0750"]
    # Shared by every instance: stopping one must not delete the others' sockets.
    assert unit["RuntimeDirectoryPreserve"] == ["yes"]
    assert server_settings()["unix_socket_perms"] == "660"
    servers = directives("server")
    assert servers
    for server in servers:
        # max_fails=0: a process restarted a moment ago is never believed down (no 502).
        assert re.fullmatch(r"unix:/run/appserver/\d+\.sock max_fails=0", server), server
    assert "adduser www-data appserver" in install_steps()  # nginx's user may open them


def test_every_start_filters_the_pkg_resources_warning_as_make_run_does():
    makefile = (ROOT / "Makefile").read_text()
    (filter_,) = re.findall(r"PYTHONWARNINGS='([^']+)'", makefile)
    unit = systemd_unit(SYSTEMD / "appserver@.service")["Service"]
    assert f'"PYTHONWARNINGS={filter_}"' in unit["Environment"]
    from .deployment_fixtures import deploy

    assert deploy.PKG_RESOURCES_WARNING == filter_


def test_the_environment_template_names_what_production_needs():
    names = {line.split("=", 1)[0].lstrip("#") for line in ENV_TEMPLATE.splitlines() if "=" in line
             and not line.startswith("# ")}
    assert {"APPSERVER_DATABASE_URL", "APPSERVER_SECRET", "APPSERVER_ALLOWED_HOSTS"} <= names


# --- the review of the deployment (outside): what the files say and what they do ----------------

SYSTEMD = ROOT / "deploy" / "systemd"
DEPLOYMENT_DOC = (ROOT / "docs" / "deployment.md").read_text()

#: "{" "}" ";" a quoted string, a word, or a comment (nginx starts one only where a token starts).
NGINX_TOKEN = re.compile(r"""\s+|\#[^\n]*|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[{};]|(?:\\.|[^\s{};'"\\])+""")


def nginx_tree(text: str = SITE) -> list[tuple]:
    """The site as (name, args, children) tuples; children is None for a simple directive."""
    root: list[tuple] = []
    stack, words, position = [root], [], 0
    for match in NGINX_TOKEN.finditer(text):
        assert match.start() == position, f"cannot read the site at {text[position:position + 40]!r}"
        position = match.end()
        token = match.group()
        if token.isspace() or token.startswith("#"):
            continue
        if token == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token[1:-1] if token[0] in "'\"" else token)
    assert len(stack) == 1 and not words and position == len(text)
    return root


def blocks(tree: list[tuple], name: str) -> list[tuple]:
    return [node for node in tree if node[0] == name and node[2] is not None]


def values(tree: list[tuple], name: str) -> list[list[str]]:
    return [node[1] for node in tree if node[0] == name and node[2] is None]


def servers() -> list[list[tuple]]:
    return [children for _, _, children in blocks(nginx_tree(), "server")]


def https_server() -> list[tuple]:
    (server,) = [s for s in servers() if any("ssl" in listen for listen in values(s, "listen"))]
    return server


def systemd_unit(path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
        else:
            key, value = line.split("=", 1)
            section.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT_FILES = sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer"))


def test_the_start_limits_are_where_systemd_reads_them():
    """StartLimitIntervalSec= belongs to [Unit]: in [Service] systemd ignores it, and a process
    that cannot start would be restarted for ever instead of staying failed."""
    unit = systemd_unit(SYSTEMD / "appserver@.service")
    assert unit["Unit"]["StartLimitIntervalSec"] == ["60"] and unit["Unit"]["StartLimitBurst"] == ["10"]
    for path in UNIT_FILES:
        for section, keys in systemd_unit(path).items():
            if section != "Unit":
                assert not {key for key in keys if key.startswith("StartLimit")}, (path.name, section)


def test_systemd_reads_every_line_of_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the section check above still runs)")
    for path in UNIT_FILES:  # an instance of the template, beside the units it names
        (tmp_path / path.name.replace("@.", "@1.")).write_text(path.read_text())
    result = subprocess.run([analyze, "verify", *sorted(map(str, tmp_path.iterdir()))],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # The paths under /srv and /etc do not exist here; anything else systemd says is a defect.
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and "/srv/appserver/" not in line and "/etc/appserver/" not in line]
    assert complaints == [], complaints


def environment_file(path) -> dict[str, str]:
    """The environment systemd's EnvironmentFile= gives: KEY=VALUE, VALUE in double quotes
    or bare."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            found[key] = value[1:-1] if value[:1] == value[-1:] == '"' and len(value) > 1 else value
    return found


def sourced(path) -> dict[str, str]:
    """The environment docs/deployment.md's ``set -a; . FILE; set +a`` gives."""
    result = subprocess.run(["sh", "-ec", 'set -a; . "$1"; set +a; env -0', "sh", str(path)],
                            capture_output=True, text=True, timeout=10, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0 and not result.stderr, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item.startswith("APPSERVER_"))


def test_the_environment_file_reads_alike_in_systemd_and_the_shell(tmp_path):
    """The allowed hosts are space-separated: unquoted, a second name would be a command to
    the shell (``www.example.com: command not found``) when the install steps source it."""
    example = ROOT / "deploy" / "appserver.env.example"
    assert sourced(example) == environment_file(example)
    two_names, count = re.subn(r'(?m)^APPSERVER_ALLOWED_HOSTS="([^"]+)"$',
                               r'APPSERVER_ALLOWED_HOSTS="\1 www.example.com"', ENV_TEMPLATE)
    assert count == 1, "APPSERVER_ALLOWED_HOSTS is not in double quotes"
    (tmp_path / "appserver.env").write_text(two_names)
    assert sourced(tmp_path / "appserver.env")["APPSERVER_ALLOWED_HOSTS"].split()[-1] == "www.example.com"
    assert sourced(tmp_path / "appserver.env") == environment_file(tmp_path / "appserver.env")
    assert "set -a; . /etc/appserver/appserver.env; set +a" in DEPLOYMENT_DOC


def install_steps() -> str:
    section = DEPLOYMENT_DOC.split("## Installing on a server (Debian)", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"(?s)```sh\n(.*?)```", section))


def appserver_commands(steps: str) -> list[list[str]]:
    """Every ``appserver CONFIG COMMAND ...`` the steps run, as argv after ``appserver``."""
    return [shlex.split(line.split("#", 1)[0])[1:] for line in steps.splitlines()
            if re.match(r"\S*/appserver \S+\.ini ", line.lstrip())]


def test_the_install_steps_create_the_database_its_role_and_a_first_administrator():
    from appserver.scripts.cli import build_parser

    steps = install_steps()
    url = environment_file(ROOT / "deploy" / "appserver.env.example")["APPSERVER_DATABASE_URL"]
    role, database = re.fullmatch(r"postgresql\+psycopg://(\w+)@[^/]+/(\w+)", url).groups()
    assert re.search(rf"(?m)createuser .*\b{role}$", steps), "no step creates the role of the example URL"
    assert re.search(rf"(?m)createdb --owner {role} {database}$", steps), "no step creates its database"
    commands = appserver_commands(steps)
    parsed = [build_parser().parse_args(argv) for argv in commands]  # each one as the CLI reads it
    assert [args.command for args in parsed][:2] == ["initdb", "create-user"], commands
    assert parsed[1].admin, "without --demo initdb makes no user: the first one must be an administrator"


def test_the_purges_run_hourly_as_the_application_does():
    """purge-sessions (and purge-events, docs/hardening.md) need the environment file and the
    database as the application has them: the same user, file and checkout, from a timer."""
    app = systemd_unit(SYSTEMD / "appserver@.service")
    purge = systemd_unit(SYSTEMD / "appserver-purge.service")
    timer = systemd_unit(SYSTEMD / "appserver-purge.timer")
    assert purge["Service"]["Type"] == ["oneshot"]
    for key in ("User", "Group", "WorkingDirectory", "EnvironmentFile"):
        assert purge["Service"][key] == app["Service"][key], key
    (pserve,) = app["Service"]["ExecStart"]
    appserver, ini = pserve.replace("/pserve ", "/appserver ").split()
    assert [shlex.split(line) for line in purge["Service"]["ExecStart"]] == [
        [appserver, ini, "purge-sessions"], [appserver, ini, "purge-events"]]
    assert timer["Timer"]["OnCalendar"] == ["hourly"] and timer["Timer"]["Persistent"] == ["true"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    steps = install_steps()
    for name in ("appserver-purge.service", "appserver-purge.timer"):
        assert f"deploy/systemd/{name}" in steps, f"no step installs {name}"
    assert re.search(r"(?m)^systemctl enable --now .*appserver-purge\.timer", steps)


#: Mozilla's "intermediate" TLS 1.2 suites: forward secrecy (ECDHE, DHE) and AEAD only.
FORWARD_SECRET_AEAD = re.compile(r"(ECDHE-(ECDSA|RSA)|DHE-RSA)-(AES(128-GCM-SHA256|256-GCM-SHA384)|CHACHA20-POLY1305)")


def test_tls_1_2_offers_only_forward_secret_aead_suites():
    server = https_server()
    (ciphers,) = values(server, "ssl_ciphers")
    suites = ciphers[0].split(":")
    assert len(ciphers) == 1 and all(FORWARD_SECRET_AEAD.fullmatch(suite) for suite in suites), suites
    assert {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"} <= set(suites)
    assert values(server, "ssl_prefer_server_ciphers") == [["off"]]  # the client picks GCM or ChaCha20
    assert values(server, "ssl_protocols") == [["TLSv1.2", "TLSv1.3"]]


def test_nothing_is_compressed_over_tls():
    """BREACH: a compressed page holding a CSRF token leaks it to whoever can inject text into
    the page and watch the lengths. Debian's stock nginx.conf says gzip on."""
    assert values(https_server(), "gzip") == [["off"]]


def effective(server: list[tuple], location: list[tuple], name: str) -> list[list[str]]:
    """nginx inherits an array directive (proxy_set_header) only into a block that sets none."""
    return values(location, name) or values(server, name)


def test_every_proxied_location_overwrites_the_forwarded_headers():
    """A client's X-Forwarded-* never reaches waitress, which trusts them from 127.0.0.1:
    /status included (a client's X-Forwarded-Proto: gopher was waitress's 400)."""
    server = https_server()
    expected = {("Host", "$host"), ("X-Forwarded-For", "$remote_addr"), ("X-Forwarded-Host", "$host"),
                ("X-Forwarded-Proto", "$scheme"), ("X-Forwarded-Port", "$server_port"), ("Forwarded", "")}
    proxied = [(args, children) for _, args, children in blocks(server, "location")
               if values(children, "proxy_pass")]
    assert {tuple(args) for args, _ in proxied} >= {("/",), ("=", "/status")}
    for args, children in proxied:
        assert {tuple(v) for v in effective(server, children, "proxy_set_header")} == expected, args


def error_shape(path: str) -> str:
    """$appserver_error_shape for a request line, as the site's map computes it."""
    (mapping,) = [children for _, args, children in blocks(nginx_tree(), "map") if args[1] == "$appserver_error_shape"]
    for key, (shape,) in ((name, args) for name, args, _ in mapping):
        if key.startswith("~") and re.search(key[1:], path):
            return shape
    return dict((name, args[0]) for name, args, _ in mapping)["default"]


def test_nginx_answers_json_endpoints_in_json():
    """The map reads the request line ($request), which a 414 has when its URI does not."""
    for path in ("/rest/api/2/myself", "/rest", "/rest?x", "https://h.example/rest/api/2/myself"):
        assert error_shape(f"GET {path} HTTP/1.1") == "json", path
    assert error_shape("GET /rest/api/2/search?q=aaaa") == "json"  # cut off by the buffer's end
    for path in ("/status", "/status?x=1"):
        assert error_shape(f"GET {path} HTTP/2.0") == "status", path
    for path in ("/issues", "/restful", "/statuses", "/", "/issues?next=/rest"):
        assert error_shape(f"POST {path} HTTP/1.1") == "html", path
    assert error_shape("") == "html"  # no request line at all


def test_redirects_go_to_the_configured_name_never_the_clients_host():
    """Host: evil.example on port 80 must not become Location: https://evil.example/..."""
    redirects = []
    for server in servers():
        redirects += [args for args in values(server, "error_page") if "497" in args]
        for _, _, children in blocks(server, "location"):
            redirects += [args for args in values(children, "return") if args[0] in ("301", "302", "307", "308")]
        redirects += [args for args in values(server, "return") if args[0] in ("301", "302", "307", "308")]
    assert len(redirects) >= 2, redirects
    for args in redirects:
        assert args[-1].startswith("https://$server_name") and "$host" not in args[-1], args


def test_the_access_log_says_which_process_answered_and_how_long_it_took():
    (log_format,) = values(nginx_tree(), "log_format")
    name, *fields = log_format
    text = " ".join(fields)
    for variable in ("$upstream_addr", "$upstream_status", "$request_time", "$upstream_response_time"):
        assert variable in text, variable
    # Never a credential: cookies, Authorization (and $remote_user, its Basic user name).
    assert not re.search(r"(?i)cookie|authorization|\$remote_user|\$http_(?!referer|user_agent)", text), text
    for server in servers():
        assert [args[-1] for args in values(server, "access_log")] == [name], server


def test_the_settings_table_says_what_the_ini_files_set():
    """docs/deployment.md's column for development and make cluster (production.ini) against
    the files."""
    (row,) = [line for line in DEPLOYMENT_DOC.splitlines()
              if line.startswith("| `production.ini` `[server:main]` | `threads`")]
    threads, graceful, body = [cell.strip() for cell in row.split("|")[3].split(",")][:3]
    settings = server_settings()
    assert threads.split()[0] == settings["threads"]
    assert graceful.split()[0] == settings["graceful_timeout"]
    assert body.startswith("1 MiB") and settings["max_request_body_size"] == str(1024 * 1024)
    # development.ini sets none: waitress's own default.
    development = get_loader(str(ROOT / "development.ini"), protocols=["wsgi"]).get_settings("server:main")
    assert int(development.get("threads", Adjustments.threads)) == int(settings["threads"])


def test_the_headings_the_deploy_files_point_to_exist():
    for path in sorted((ROOT / "deploy").rglob("*")):
        if path.is_file() and path.suffix != ".pyc":
            for doc, heading in re.findall(r'(docs/[\w-]+\.md): "([^"]+)"', path.read_text()):
                headings = re.findall(r"(?m)^#+ (.+)$", (ROOT / doc).read_text())
                assert heading in headings, f"{path.name} points to {doc}: {heading!r}, which has no such heading"


def test_waitress_does_not_log_every_queued_request():
    """With more connections than threads a request waits for a thread (docs/performance.md,
    "Throughput against connections"); waitress says so at WARNING about every third request
    under load. Its other warnings stay."""
    program = ("import logging, sys; from plaster import get_loader; get_loader(sys.argv[1]).setup_logging(); "
               "from waitress.utilities import queue_logger, logger; "
               "print(queue_logger.getEffectiveLevel(), logger.getEffectiveLevel())")
    result = subprocess.run([sys.executable, "-c", program, str(ROOT / "production.ini")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    queue, waitress = map(int, result.stdout.split())
    assert queue == logging.ERROR and waitress <= logging.WARNING


def make_venv(tmp_path, *stamps: str):
    """A stand-in virtualenv whose pip only records that it ran, and the given stamps, newer
    than the package's metadata."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    pip = venv / "bin" / "pip"
    pip.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'pip-ran'}\n")
    pip.chmod(0o755)
    for stamp in stamps:
        (venv / stamp).write_text("")
    return venv


def run_make(venv, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", f"VENV={venv}", *targets], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_cluster_targets_install_nothing_after_make_test(tmp_path):
    """`make test` builds .test-deps, a superset of .run-deps: `make cluster` then ran
    `pip install -e` again (the network; under live processes for a rolling restart)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = make_venv(tmp_path, ".test-deps")
    result = run_make(venv, f"{venv}/.run-deps")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pip-ran").exists() and (venv / ".run-deps").exists()
    # Without the test dependencies, they are installed as before.
    fresh = make_venv(tmp_path / "fresh")
    assert run_make(fresh, f"{fresh}/.run-deps").returncode == 0
    assert (tmp_path / "fresh" / "pip-ran").read_text().startswith("install")
    # A rolling restart and a stop never install: they name no dependency at all.
    for target in ("cluster-restart", "cluster-stop"):
        dry = run_make(make_venv(tmp_path / target), "-n", target)
        assert dry.returncode == 0 and "pip" not in dry.stdout and ".run-deps" not in dry.stdout, dry.stdout


def test_make_cluster_can_move_its_ports_and_directory():
    dry = subprocess.run(["make", "-n", "cluster", "HTTPS_PORT=6631", "HTTP_PORT=6632", "CLUSTER_DIR=/tmp/c"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    command = " ".join(dry.stdout.replace("\\\n", " ").split())
    assert "deploy/cluster.py start" in command, dry.stdout + dry.stderr
    for option in ("--https-port 6631", "--http-port 6632", "--run-dir /tmp/c"):
        assert option in command, command
    for variable in ("HTTPS_PORT", "HTTP_PORT", "CLUSTER_DIR"):
        assert f"`{variable}`" in DEPLOYMENT_DOC, variable
