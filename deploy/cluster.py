"""``make cluster``: the production shape on this one machine, for real.

    python deploy/cluster.py start [--processes N]   # make cluster PROCESSES=N
    python deploy/cluster.py restart                 # a rolling restart, one process at a time
    python deploy/cluster.py status
    python deploy/cluster.py stop                    # make cluster-stop

``start`` checks PostgreSQL at 127.0.0.1:5432, creates the database if missing, migrates and
seeds it (``appserver production.ini initdb --demo``), starts N waitress processes from
``production.ini``, each on a Unix socket in ``RUN_DIR/sockets/`` (``APPSERVER_LISTEN=unix:…``;
as root, in a folder of its own in /tmp) that only this user, whom nginx's workers run as,
may open (as root: nginx's workers, nobody), as the systemd unit's processes
listen on ``/run/appserver/N.sock``; generates a CA and a server certificate with ``openssl``
(once; kept for the next start, so a browser that trusts the CA keeps trusting it), renders
``deploy/nginx/appserver.conf`` for those sockets and starts Debian's nginx on
https://127.0.0.1:8443 (``--https-port``, ``--http-port``: ``make cluster HTTPS_PORT=N
HTTP_PORT=N``). ``stop`` stops exactly the processes whose pid
files it wrote under the run directory (``.cluster/`` by default), and checks that each pid
still runs the command it started before signalling it.

Only the Python standard library and the project's own virtualenv are used (this file runs
with ``.venv/bin/python``); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SITE_TEMPLATE = ROOT / "deploy" / "nginx" / "appserver.conf"
PRODUCTION_INI = ROOT / "production.ini"
BIN = Path(sys.executable).parent  # the virtualenv's bin: pserve, appserver
NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/appserver_cluster"
START_TIMEOUT = 60.0
#: The message the pkg_resources import of pyramid prints at every start (as `make run` does).
PKG_RESOURCES_WARNING = "ignore:pkg_resources is deprecated:UserWarning"
#: Who nginx's workers run as when the cluster is started as root ("user" in nginx.conf).
ROOT_WORKER_USER, ROOT_WORKER_GROUP = "nobody", "nogroup"
STOP_TIMEOUT = 45.0  # graceful_timeout (30 s in production.ini) and some


class ClusterError(RuntimeError):
    """Something the operator must fix; the message is the one line they read."""


@dataclass
class Cluster:
    run_dir: Path = ROOT / ".cluster"
    processes: int = 2
    https_port: int = 8443
    http_port: int = 8088
    database_url: str = DEFAULT_DATABASE
    host: str = "127.0.0.1"
    process_header: bool = True
    #: The waitress processes, 1..N: each has its socket, pid file and log named after it.
    instances: list[int] = field(default_factory=list)
    #: Where the sockets are when not in RUN_DIR/sockets (started as root: see make_socket_dir).
    sockets: str = ""

    # --- paths -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.https_port}"

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "tls" / "ca.pem"

    @property
    def nginx_dir(self) -> Path:
        return self.run_dir / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx_dir / "nginx.conf"

    @property
    def nginx_pid_file(self) -> Path:
        return self.nginx_dir / "nginx.pid"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "cluster.json"

    @property
    def socket_dir(self) -> Path:
        return Path(self.sockets) if self.sockets else self.run_dir / "sockets"

    def socket_path(self, instance: int) -> Path:
        return self.socket_dir / f"{instance}.sock"

    def pid_file(self, instance: int) -> Path:
        return self.run_dir / f"appserver-{instance}.pid"

    def log_file(self, instance: int) -> Path:
        return self.run_dir / f"appserver-{instance}.log"

    # --- state -------------------------------------------------------------------------

    def save(self) -> None:
        state = {
            "processes": self.processes, "https_port": self.https_port, "http_port": self.http_port,
            "instances": self.instances, "database_url": self.database_url, "host": self.host,
            "process_header": self.process_header, "sockets": self.sockets,
        }
        private_file(self.state_file).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> "Cluster":
        state = json.loads((run_dir / "cluster.json").read_text())
        known = {"processes", "https_port", "http_port", "database_url", "host", "process_header", "sockets"}
        cluster = cls(run_dir=run_dir, **{k: v for k, v in state.items() if k in known})
        # A cluster started before the sockets named its processes by port (appserver-8081.pid):
        # read so, `make cluster-stop` still stops it.
        cluster.instances = list(state.get("instances", state.get("ports", [])))
        return cluster

    def environment(self, instance: int, database_url: str | None = None) -> dict[str, str]:
        """What the systemd unit's EnvironmentFile and Environment= lines give a process."""
        env = dict(os.environ)
        warnings = [w for w in (env.get("PYTHONWARNINGS"), PKG_RESOURCES_WARNING) if w]
        env.update(
            APPSERVER_DATABASE_URL=database_url or self.database_url,
            APPSERVER_SECRET=self.secret(),
            APPSERVER_LISTEN=f"unix:{self.socket_path(instance)}",
            APPSERVER_ALLOWED_HOSTS=f"{self.host} localhost",
            APPSERVER_PROCESS_HEADER="true" if self.process_header else "false",
            PYTHONUNBUFFERED="1",
            # pyramid imports pkg_resources before appserver could filter its warning.
            PYTHONWARNINGS=",".join(warnings),
        )
        return env

    def secret(self) -> str:
        """One secret for every process (CSRF tokens made by one are checked by another),
        kept across restarts; APPSERVER_SECRET wins if set."""
        if os.environ.get("APPSERVER_SECRET"):
            return os.environ["APPSERVER_SECRET"]
        path = self.run_dir / "secret"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()

    # --- start -------------------------------------------------------------------------

    def start(self) -> None:
        if self.state_file.exists() and any(Cluster.load(self.run_dir).running().values()):
            raise ClusterError(f"a cluster is already running from {self.run_dir}: stop it first (make cluster-stop)")
        nginx = find_nginx()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        check_postgresql(self.database_url)
        self.instances = list(range(1, self.processes + 1))
        ensure_free(self.host, self.https_port, "HTTPS_PORT")
        ensure_free(self.host, self.http_port, "HTTP_PORT")
        self.make_socket_dir()
        self.save()
        self.initdb()
        make_certificates(self.run_dir / "tls", self.host)
        try:
            for instance in self.instances:
                self.start_process(instance)
            for instance in self.instances:
                self.wait_for_process(instance)
            self.write_nginx_conf()
            run([nginx, "-t", "-q", "-p", str(self.nginx_dir), "-c", str(self.nginx_conf)], "nginx -t")
            run([nginx, "-p", str(self.nginx_dir), "-c", str(self.nginx_conf)], "nginx")
            wait_for_status(self.url + "/status", self.nginx_dir / "error.log", ca_file=self.ca_file)
        except BaseException:
            self.stop(quiet=True)
            raise

    def make_socket_dir(self) -> None:
        """The sockets' folder: nobody but this user (and, started as root, nginx's workers,
        which then run as nobody:nogroup) may reach a socket in it. A process behind a
        socket trusts the X-Forwarded-* headers it is sent (production.ini), so a user who
        could connect could forge the client's address and scheme.

        As root the folder is a new one in the temporary directory (nginx's workers, nobody,
        must be able to reach it, and a run directory under /root or pytest's
        /tmp/pytest-of-root is closed to them), group nogroup and setgid, so each socket is
        created in that group, and production.ini's unix_socket_perms (660) lets them in."""
        if os.geteuid() == 0:
            import grp
            import tempfile

            self.sockets = tempfile.mkdtemp(prefix="appserver-cluster-")
            directory = self.socket_dir
            os.chown(directory, 0, grp.getgrnam(ROOT_WORKER_GROUP).gr_gid)
            os.chmod(directory, 0o2750)
        else:
            self.sockets = ""
            directory = self.socket_dir
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        if len(os.fsencode(self.socket_path(max(self.instances, default=1)))) > 107:
            raise ClusterError(f"{directory} is too long a path for a Unix socket (at most 107 bytes "
                               "with the socket's name): choose a shorter CLUSTER_DIR")

    def wait_for_process(self, instance: int) -> None:
        """Until the process answers RUNNING on its own socket."""
        wait_for_status("http://localhost/status", self.log_file(instance),
                        unix_socket=self.socket_path(instance))

    def initdb(self) -> None:
        env = self.environment(self.instances[0])
        result = subprocess.run(
            [str(BIN / "appserver"), str(PRODUCTION_INI), "initdb", "--demo"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ClusterError(f"appserver initdb failed: {last}")

    def start_process(self, instance: int, database_url: str | None = None) -> int:
        """Start the process ``instance``; ``database_url`` points it at another database
        than the cluster's (the tests: one process whose database is unreachable)."""
        log = private_file(self.log_file(instance)).open("ab")
        process = subprocess.Popen(
            [str(BIN / "pserve"), str(PRODUCTION_INI)],
            cwd=ROOT, env=self.environment(instance, database_url), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.pid_file(instance).write_text(f"{process.pid}\n")
        return process.pid

    def write_nginx_conf(self) -> None:
        self.nginx_dir.mkdir(parents=True, exist_ok=True)
        (self.nginx_dir / "appserver.conf").write_text(render_site(SITE_TEMPLATE.read_text(), self))
        for log in ("access.log", "error.log"):  # nginx would make them 644; it keeps a file's mode
            private_file(self.nginx_dir / log)
        worker_user = f"user {ROOT_WORKER_USER} {ROOT_WORKER_GROUP};\n" if os.geteuid() == 0 else ""
        self.nginx_conf.write_text(
            "# Written by deploy/cluster.py: nginx for `make cluster`, all state in this directory.\n"
            f"{worker_user}"
            "worker_processes 2;\n"
            f"pid {self.nginx_pid_file};\n"
            f"error_log {self.nginx_dir / 'error.log'} warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    include /etc/nginx/mime.types;\n"
            # As Debian's stock nginx.conf has it: the site must turn it off itself (BREACH).
            "    gzip on;\n"
            f"    access_log {self.nginx_dir / 'access.log'};\n"
            f"    client_body_temp_path {self.nginx_dir / 'client_body'};\n"
            f"    proxy_temp_path {self.nginx_dir / 'proxy'};\n"
            f"    fastcgi_temp_path {self.nginx_dir / 'fastcgi'};\n"
            f"    uwsgi_temp_path {self.nginx_dir / 'uwsgi'};\n"
            f"    scgi_temp_path {self.nginx_dir / 'scgi'};\n"
            f"    include {self.nginx_dir / 'appserver.conf'};\n"
            "}\n"
        )

    # --- stop, restart, status ---------------------------------------------------------

    def running(self) -> dict[str, int | None]:
        """name -> pid of what this cluster started and is still running (None if not)."""
        found: dict[str, int | None] = {}
        for instance in self.instances:
            found[f"appserver-{instance}"] = live_pid(self.pid_file(instance), "pserve")
        found["nginx"] = live_pid(self.nginx_pid_file, "nginx")
        return found

    def stop(self, quiet: bool = False) -> None:
        """nginx first (no new requests reach the processes), then every process, each
        gracefully (SIGTERM) and, past the timeout, for good (SIGKILL)."""
        stopped = []
        nginx_pid = live_pid(self.nginx_pid_file, "nginx")
        if nginx_pid:
            stop_pid(nginx_pid, signal.SIGQUIT)  # nginx's graceful shutdown
            stopped.append(f"nginx (pid {nginx_pid})")
        self.nginx_pid_file.unlink(missing_ok=True)
        for instance in self.instances:
            pid = self.stop_process(instance)
            if pid:
                stopped.append(f"appserver {instance} (pid {pid})")
        if self.sockets and not any(self.running().values()):  # root's folder in /tmp: ours alone
            for instance in self.instances:
                self.socket_path(instance).unlink(missing_ok=True)
                Path(f"{self.socket_path(instance)}.lock").unlink(missing_ok=True)  # startup.claim_socket_path
            try:
                self.socket_dir.rmdir()
            except OSError:
                pass
        if not quiet:
            print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing from {self.run_dir} was running")

    def stop_process(self, instance: int) -> int | None:
        """SIGTERM (a graceful stop) to the process ``instance``; returns its pid if it ran."""
        pid = live_pid(self.pid_file(instance), "pserve")
        if pid:
            stop_pid(pid, signal.SIGTERM)
        self.pid_file(instance).unlink(missing_ok=True)
        return pid

    def restart(self) -> None:
        """A rolling restart: one process at a time, each back and healthy before the next
        goes. nginx sends new requests to the others meanwhile (a stopped process's socket
        refuses connections, which nginx retries elsewhere; the new process replaces it)."""
        for instance in self.instances:
            self.stop_process(instance)
            self.start_process(instance)
            self.wait_for_process(instance)

    def describe(self) -> str:
        return (
            f"appserver cluster: {self.url}/  ({len(self.instances)} waitress processes on Unix sockets "
            f"{self.socket_dir}/{{{','.join(map(str, self.instances))}}}.sock; "
            f"http://{self.host}:{self.http_port} redirects)\n"
            f"  CA certificate for clients: {self.ca_file}\n"
            f"    curl --cacert {self.ca_file} {self.url}/status\n"
            f"  database: {self.database_url}   logs: {self.run_dir}/*.log\n"
            "  demo users: admin/admin-password, fred/fred-password, alice/alice-password\n"
            f"  stop it:    {self.make_command('cluster-stop')}"
        )

    def make_command(self, target: str) -> str:
        """``make TARGET``, with the CLUSTER_DIR this cluster was started with (the second
        cluster of docs/deployment.md): without it, make would look in the default one."""
        if self.run_dir.resolve() == (ROOT / ".cluster").resolve():
            return f"make {target}"
        return f"make {target} CLUSTER_DIR={self.run_dir}"


# --- helpers -------------------------------------------------------------------------------


def find_nginx() -> str:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise ClusterError("nginx is not installed: apt-get install nginx-light (make cluster does it as root)")


def check_postgresql(database_url: str) -> None:
    """Is the server there? Then create the database if it is missing."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url.replace("postgresql+psycopg://", "postgresql://", 1))
    name = parts.path.lstrip("/")
    server = parts._replace(path="/postgres").geturl()
    try:
        connection = psycopg.connect(server, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        raise ClusterError(
            f"PostgreSQL is not answering at {parts.hostname}:{parts.port or 5432}: start it "
            f"(pg_ctlcluster 15 main start) or set CLUSTER_DATABASE_URL"
        ) from None
    with connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def private_file(path: Path) -> Path:
    """``path``, created if missing, readable by its owner alone: cluster.json holds the
    database URL (with its password, if it has one) and the logs what every request did."""
    path.touch(mode=0o600)
    os.chmod(path, 0o600)  # a file an earlier run made keeps its mode otherwise
    return path


def ensure_free(host: str, port: int, variable: str) -> None:
    with socket.socket() as sock:
        if sock.connect_ex((host, port)) == 0:
            raise ClusterError(f"{host}:{port} is already in use: stop what listens there or choose "
                               f"another port: make cluster {variable}=N")


def run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ClusterError(f"{what} failed: {(result.stderr or result.stdout).strip()}")


def make_certificates(directory: Path, host: str) -> None:
    """A CA (kept, so clients that trust it keep trusting it) and a server certificate for
    127.0.0.1 and localhost signed by it, both with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca.pem"
    key, cert = directory / "server-key.pem", directory / "server.pem"
    if not (ca_key.exists() and ca_cert.exists()):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "365",
             "-subj", f"/CN=appserver cluster CA {socket.gethostname()} {secrets.token_hex(4)}",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "openssl (CA)")
        cert.unlink(missing_ok=True)
    if not (key.exists() and cert.exists()):
        request = directory / "server.csr"
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(request), "-subj", f"/CN={host}"], "openssl (key)")
        extensions = directory / "server.ext"
        extensions.write_text(
            f"subjectAltName=IP:127.0.0.1,DNS:localhost{'' if host in ('127.0.0.1', 'localhost') else ',DNS:' + host}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
        )
        run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "90", "-sha256", "-extfile", str(extensions), "-out", str(cert)],
            "openssl (sign)")
        request.unlink()


def render_site(template: str, cluster: Cluster) -> str:
    """deploy/nginx/appserver.conf with the lines marked "cluster:" made local."""
    tls = cluster.run_dir / "tls"
    upstreams = "".join(
        f"    server unix:{cluster.socket_path(instance)} max_fails=0;\n" for instance in cluster.instances
    )
    replacements = [
        (r"(?m)^    server unix:/run/appserver/\d+\.sock .*\n(    server unix:/run/appserver/\d+\.sock .*\n)*",
         upstreams),
        (r"(?m)^    listen \[::\]:.*\n", ""),
        (r"listen 80;", f"listen {cluster.host}:{cluster.http_port};"),
        (r"listen 443 ssl", f"listen {cluster.host}:{cluster.https_port} ssl"),
        # The first name is $server_name, where the http redirects go: the cluster's address.
        (r"server_name appserver\.example\.com;",
         f"server_name {' '.join(dict.fromkeys([cluster.host, '127.0.0.1', 'localhost']))};"),
        (r"https://\$server_name\$request_uri", f"https://$server_name:{cluster.https_port}$request_uri"),
        (r"on https://\$server_name/", f"on https://$server_name:{cluster.https_port}/"),
        (r"/var/log/nginx/appserver-access\.log", str(cluster.nginx_dir / "access.log")),
        (r"/etc/ssl/appserver/fullchain\.pem", str(tls / "server.pem")),
        (r"/etc/ssl/appserver/privkey\.pem", str(tls / "server-key.pem")),
    ]
    for pattern, replacement in replacements:
        template, count = re.subn(pattern, lambda _: replacement, template)
        if count == 0:
            raise ClusterError(f"deploy/nginx/appserver.conf changed: nothing matches {pattern!r}")
    return template


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket: a process's own /status, as nginx reaches it."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def get_json(url: str, unix_socket: Path | None, context: ssl.SSLContext | None) -> tuple[int, dict]:
    if unix_socket is None:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, {}
    connection = UnixHTTPConnection(unix_socket, timeout=5)
    try:
        connection.request("GET", urlsplit(url).path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def wait_for_status(url: str, log: Path, ca_file: Path | None = None, timeout: float = START_TIMEOUT,
                    unix_socket: Path | None = None) -> None:
    """Wait until ``url`` (through ``unix_socket`` if given) answers 200 {"state": "RUNNING"}."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    deadline = time.monotonic() + timeout
    last = "no answer"
    where = f"{url} on unix:{unix_socket}" if unix_socket else url
    while time.monotonic() < deadline:
        try:
            status, body = get_json(url, unix_socket, context)
            if status == 200 and body.get("state") == "RUNNING":
                return
            last = f"HTTP {status}"
        except (OSError, ValueError, http.client.HTTPException) as error:
            last = str(error)
        time.sleep(0.2)  # waiting for a process to start listening
    raise ClusterError(f"{where} did not report RUNNING within {timeout:g} s ({last}); see {log}")


def live_pid(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ``name`` (pids are reused)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state == "Z" or not any(name.encode() in part for part in command[:2]):
        return None
    return pid


def stop_pid(pid: int, sig: signal.Signals, timeout: float = STOP_TIMEOUT) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "restart", "status"])
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("CLUSTER_DIR", ROOT / ".cluster")))
    parser.add_argument("--processes", type=int, default=int(os.environ.get("PROCESSES", "2")))
    parser.add_argument("--https-port", type=int, default=8443, help="make cluster HTTPS_PORT=N")
    parser.add_argument("--http-port", type=int, default=8088, help="make cluster HTTP_PORT=N (redirects)")
    parser.add_argument("--database-url", default=os.environ.get("CLUSTER_DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument("--no-process-header", action="store_true", help="leave X-Appserver-Process off")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    try:
        if args.command == "start":
            if args.processes < 1:
                raise ClusterError("PROCESSES must be at least 1")
            cluster = Cluster(
                run_dir=run_dir, processes=args.processes, https_port=args.https_port,
                http_port=args.http_port, database_url=args.database_url,
                process_header=not args.no_process_header,
            )
            cluster.start()
            print(cluster.describe())
            return 0
        if not (run_dir / "cluster.json").exists():
            print(f"no cluster was started from {run_dir}: nothing to {args.command}")
            return 0 if args.command in ("stop", "status") else 1
        cluster = Cluster.load(run_dir)
        if args.command == "stop":
            cluster.stop()
        elif args.command == "restart":
            cluster.restart()
            print(f"restarted {len(cluster.instances)} process(es), one at a time")
        else:
            for name, pid in cluster.running().items():
                print(f"{name:<16} {'running, pid ' + str(pid) if pid else 'stopped'}")
        return 0
    except ClusterError as error:
        print(f"make cluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
