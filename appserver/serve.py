"""waitress with a graceful stop: ``use = egg:appserver#waitress`` in ``[server:main]``.

waitress itself has no SIGTERM handling: the signal's default action ends the process at
once, and every request in flight (an argon2 login, a search, a body still arriving) is cut
off; the proxy in front sees a reset it may not retry (a POST). systemd, ``make cluster`` and
a rolling restart all stop a process with SIGTERM, so this runner turns it into:

1. stop listening: connections already waiting in the listen backlog are accepted first, so
   nothing the kernel accepted on our behalf is reset; new connections are refused, which
   nginx answers by trying the next process (for any method: nothing was sent);
2. let every connection finish the request it has started (headers or body still arriving
   included) and flush its response; idle keep-alive connections are closed;
3. exit 0 when no connection is left, or after ``graceful_timeout`` seconds (default 30)
   with a warning naming how many requests were cut off.

Each response also leaves the process in one piece (:func:`create_server`): waitress sends the
status line and headers as soon as they exist, and the body in a second send. A process that
dies between the two (SIGKILL, the OOM killer) has told the proxy "200 OK" and nothing more,
which nginx can neither retry nor complete: the client gets a cut body. Held until the
response is complete, the same bytes go out in one send, so a death leaves either the whole
response or none of it (and nginx sends a GET to the next process).

The listening address may come from ``APPSERVER_LISTEN``, so that one ``production.ini``
serves every instance of the systemd template unit ``appserver@.service``: a Unix socket
(``unix:/run/appserver/1.sock``, what the unit and ``make cluster`` use: only nginx's user and
the service may connect, so only nginx's forwarded headers are trusted) or host:port
(``127.0.0.1:8081``). Stopping works alike on both: the listening socket is closed, and a new
connection is refused (a socket file left behind refuses connections too; the next start
replaces it, :func:`appserver.startup.check_free_socket_path`).
"""
from __future__ import annotations

import logging
import select
import signal
import time
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from .server_errors import (
    CLOSE_CONNECTION,
    DEFAULT_REST_PREFIX,
    ProxyHeaderRefusals,
    RequestParser,
    ServerErrorTask,
    mark_reached,
)
from .startup import StartupError, check_free, exit_with, listen_settings

log = logging.getLogger(__name__)

DEFAULT_GRACEFUL_TIMEOUT = 30.0

#: A response's bytes are held until the application has finished it, up to this many (a
#: larger or streamed body is sent as it comes, once this much is waiting). waitress itself
#: spills a response to a temporary file above 1 MiB (``outbuf_overflow``).
RESPONSE_BUFFER = 1024 * 1024

#: A connection accepted but silent this long is not a request in flight (it is a client's
#: spare keep-alive connection); during a stop it is closed.
UNUSED_CONNECTION_GRACE = 2.0


def server_factory(global_conf: dict | None = None, **settings: Any) -> Callable[[Any], None]:
    """The ``paste.server_factory`` entry point: waitress's settings, plus ``graceful_timeout``.

    pserve loads the server before the application, so a busy address is said here, in one
    line, before anything else starts (as ``egg:appserver#main`` does).
    """
    # Before anything listens: a SIGHUP between the bind and the loop (a reload sent as the
    # unit starts) took its default action, ending the process silently.
    signal.signal(signal.SIGHUP, hang_up)
    settings = dict(settings)
    timeout = float(settings.pop("graceful_timeout", DEFAULT_GRACEFUL_TIMEOUT))
    try:
        settings = listen_settings(settings, (global_conf or {}).get("http_port"))
        check_free(settings, claim=True)
    except StartupError as error:
        exit_with(str(error))

    def serve(app: Any) -> None:
        logging.basicConfig()  # as waitress.serve does: idempotent once pserve configured logging
        server = create_server(app, **settings)
        say_where(server, settings)
        GracefulServer(server, timeout).serve()

    return serve


def say_where(server: Any, settings: dict[str, Any]) -> None:
    """The "Serving on" line, through this project's logger: production.ini shows it (its
    appserver logger is at INFO, waitress's own lines only from WARN), and a person starting
    ``pserve production.ini`` by hand sees where it listens. waitress would also say
    "http://unix:/path" for a socket."""
    if settings.get("unix_socket"):
        log.info("Serving on unix:%s", settings["unix_socket"])
        return
    listening = getattr(server, "effective_listen", None) or [(server.effective_host, server.effective_port)]
    for host, port, *_ in listening:
        log.info("Serving on http://%s:%s", f"[{host}]" if ":" in str(host) else host, port)


def create_server(app: Any, **settings: Any) -> Any:
    """``waitress.create_server``, with channels that send each response in one piece and
    answer waitress's own refusals (a body over the limit, say) as the application answers
    its errors (:mod:`appserver.server_errors`).

    The benchmark serves every target (its anchors and Django included) through this too, so
    that the ratios it prints compare applications, not servers.
    """
    # Behind a trusted proxy waitress wraps the application in its proxy-header middleware,
    # whose refusals ProxyHeaderRefusals (below) tells from the application's answers.
    server = waitress.create_server(mark_reached(app) if settings.get("trusted_proxy") else app, **settings)
    # Deprecated as a setting, which would warn; still what write_soon and handle_write read
    # to decide whether a running task's output is worth sending yet.
    server.adj.send_bytes = RESPONSE_BUFFER
    listeners = [server] if isinstance(server, BaseWSGIServer) else [
        d for d in server.map.values() if isinstance(d, BaseWSGIServer)]
    # The project's REST prefix; the benchmark's anchors and Django have none: the default.
    app_settings = getattr(getattr(app, "registry", None), "appserver_settings", None)
    rest_prefix = app_settings.rest_prefix if app_settings is not None else DEFAULT_REST_PREFIX
    for listener in listeners:
        listener.channel_class = WholeResponseChannel
        listener.rest_prefix = rest_prefix  # read by ServerErrorTask
        if listener.adj.trusted_proxy:  # waitress wrapped the application in its proxy middleware
            listener.application = ProxyHeaderRefusals(listener.application, listener.adj, rest_prefix)
    return server


class WholeResponseTask(WSGITask):
    """Sends what the application wrote (headers and body) once it has finished writing."""

    def build_response_header(self) -> bytes:
        # A WSGI application may not send Connection (PEP 3333); one asks for the close
        # through the environ (server_errors.ProxyHeaderRefusals, as waitress's refusals close).
        if self.environ is not None and self.environ.get(CLOSE_CONNECTION):
            self.set_close_on_finish()
        return super().build_response_header()

    def finish(self) -> None:
        super().finish()
        channel = self.channel
        with channel.outbuf_lock:
            # As waitress's write_soon flushes from a task thread: what the socket does not
            # take now, the main loop sends when it becomes writable; an OSError closes.
            channel._flush_exception(channel._flush_some, do_close=False)


class WholeResponseChannel(HTTPChannel):
    task_class = WholeResponseTask
    parser_class = RequestParser
    error_task_class = ServerErrorTask


def hang_up(signum: int = signal.SIGHUP, frame: Any = None) -> None:
    """SIGHUP's default action ended the process at once, silently, with an exit that
    systemd's ``Restart=on-failure`` counts as clean (an outside review): a daemon's
    "reload" took the process down for good. Nothing here can be reloaded in place."""
    log.warning("SIGHUP ignored: this server has nothing to reload; restart it to read new "
                "code or settings (systemctl restart appserver@N, or make cluster-restart)")


class GracefulServer:
    """Runs waitress's loop until SIGTERM, then drains it (see the module's docstring)."""

    def __init__(self, server: Any, timeout: float = DEFAULT_GRACEFUL_TIMEOUT) -> None:
        self.server = server
        self.map: dict = server.map if hasattr(server, "map") else server._map
        self.adj = server.adj
        self.timeout = timeout
        self.stop_requested = False
        self.deadline: float | None = None

    def request_stop(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        """The signal handler: only sets a flag; the loop notices within one loop timeout."""
        self.stop_requested = True

    def serve(self) -> None:
        previous = signal.signal(signal.SIGTERM, self.request_stop)
        try:
            while True:
                wasyncore.loop(
                    timeout=self.adj.asyncore_loop_timeout,
                    map=self.map,
                    use_poll=self.adj.asyncore_use_poll,
                    count=1,
                )
                if self.stop_requested and self._drained():
                    break
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.server.task_dispatcher.shutdown(timeout=5)

    def _drained(self) -> bool:
        """One step of the stop; True once nothing is left to wait for."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout
            self._stop_listening()
            log.info("SIGTERM: no longer accepting connections; finishing requests in flight")
        channels = self.channels()
        busy = [channel for channel in channels if in_flight(channel)]
        now = time.time()
        for channel in channels:
            if channel not in busy and (served(channel) or now - channel.creation_time > UNUSED_CONNECTION_GRACE):
                channel.handle_close()
        if not busy and not self.channels():
            log.info("stopped gracefully")
            return True
        if time.monotonic() > self.deadline:
            log.warning(
                "graceful_timeout (%g s) passed: %d request(s) still in flight are cut off",
                self.timeout,
                len(busy),
            )
            return True
        return False

    def listeners(self) -> list[BaseWSGIServer]:
        return [d for d in self.map.values() if isinstance(d, BaseWSGIServer)]

    def channels(self) -> list[HTTPChannel]:
        return [d for d in list(self.map.values()) if isinstance(d, HTTPChannel)]

    def _stop_listening(self) -> None:
        for listener in self.listeners():
            # Take what the kernel has already accepted for us, so closing resets nobody.
            for _ in range(self.adj.backlog):
                ready, _, _ = select.select([listener.socket], [], [], 0)
                if not ready:
                    break
                listener.handle_accept()
            # dispatcher.close, not the server's: the trigger it would close is still needed
            # by the worker threads to hand their responses to this loop.
            wasyncore.dispatcher.close(listener)


def in_flight(channel: HTTPChannel) -> bool:
    """A request is being read, served or its response is still being sent."""
    return bool(
        channel.requests
        or channel.request is not None
        or channel.total_outbufs_len
        or channel.close_when_flushed
    )


def served(channel: HTTPChannel) -> bool:
    """The connection has carried a request already (it is an idle keep-alive connection)."""
    return channel.last_activity > channel.creation_time
