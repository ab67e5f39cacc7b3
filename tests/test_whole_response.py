"""A response leaves the process in one piece (``appserver.serve.create_server``).

waitress sends the status line and headers the moment they exist and the body in a second
send, so a process killed in between has told nginx "200 OK" and nothing else: nginx cannot
send that GET to another process any more, and its client gets a cut body (seen once in the
deployment test that SIGKILLs a process under load). Held until the application has finished,
the same bytes go out in one send: a process that dies leaves the whole response or none of
it. Larger bodies than ``RESPONSE_BUFFER`` still stream.
"""
from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from appserver import serve

from .support import ROOT, serving

SMALL = b"{" + b"x" * 6000 + b"}"
#: Three times the buffer, in 64 KiB chunks: streamed, not held whole.
LARGE_CHUNKS = [bytes([65 + i % 26]) * 65536 for i in range(3 * serve.RESPONSE_BUFFER // 65536)]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/large":
        start_response("200 OK", [("Content-Length", str(sum(map(len, LARGE_CHUNKS))))])
        return iter(LARGE_CHUNKS)
    if path == "/empty":
        start_response("204 No Content", [])
        return [b""]
    start_response("200 OK", [("Content-Length", str(len(SMALL))), ("Content-Type", "application/json")])
    return [SMALL]


@pytest.fixture
def sends(monkeypatch) -> list[bytes]:
    """Every buffer handed to a socket by the server's channels, in order."""
    recorded: list[bytes] = []
    original = serve.WholeResponseChannel.send

    def send(self, data, do_close=True):
        # Recorded before the bytes leave: the client may have read them, and the test gone
        # on to look at this list, before ``original`` returns here in the server's thread.
        index = len(recorded)
        recorded.append(bytes(data))
        sent = original(self, data, do_close=do_close)
        if sent:
            recorded[index] = bytes(data[:sent])
        else:
            del recorded[index]  # the socket took nothing: no send to count
        return sent

    monkeypatch.setattr(serve.WholeResponseChannel, "send", send)
    return recorded


@pytest.fixture
def server() -> Iterator:
    with serving(serve.create_server(app, host="127.0.0.1", port=0, threads=2)) as srv:
        yield srv


def get(server, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_headers_and_body_leave_in_one_send(server, sends):
    assert get(server, "/") == (200, SMALL)
    assert len(sends) == 1, [len(s) for s in sends]
    assert sends[0].startswith(b"HTTP/1.1 200 OK\r\n") and sends[0].endswith(SMALL)


def test_a_response_without_a_body_is_sent_too(server, sends):
    assert get(server, "/empty") == (204, b"")
    assert len(sends) == 1 and sends[0].startswith(b"HTTP/1.1 204 No Content\r\n")


def test_a_large_body_streams_and_arrives_whole(server, sends):
    status, body = get(server, "/large")
    assert status == 200 and body == b"".join(LARGE_CHUNKS)
    assert len(sends) > 1  # sent as it came, not held until the end


def test_a_slow_reader_gets_every_byte(server, sends):
    """What the socket does not take at the end of the task, the main loop sends later."""
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # inherited on accept
    client = socket.create_connection(("127.0.0.1", server.effective_port), timeout=30)
    client.sendall(b"GET /large HTTP/1.0\r\nHost: x\r\n\r\n")
    time.sleep(0.5)  # the server meets a full socket before the client reads anything
    received = bytearray()
    while chunk := client.recv(65536):
        received += chunk
    client.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") and body == b"".join(LARGE_CHUNKS)
    assert len(sends) > 20  # many partial sends: the socket was full again and again


DYING_SERVER = textwrap.dedent("""
    import os, signal, sys
    from appserver.serve import create_server

    def app(environ, start_response):
        # Two chunks of a declared 20,000-byte body, then the process dies (SIGKILL: no
        # handler, no cleanup), as the OOM killer or `kill -9` would end it.
        start_response("200 OK", [("Content-Length", "20000")])
        yield b"a" * 10000
        os.kill(os.getpid(), signal.SIGKILL)
        yield b"b" * 10000

    server = create_server(app, host="127.0.0.1", port=int(sys.argv[1]), threads=1)
    print("ready", flush=True)
    server.run()
""")


def test_a_process_killed_mid_response_has_sent_nothing_of_it(tmp_path):
    """Nothing a proxy has half received: it sees a connection closed before any answer,
    which nginx retries on the next process for a GET (plain waitress had sent the headers
    and the first half here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", DYING_SERVER, str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        received = bytearray()
        try:
            while chunk := client.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        client.close()
        assert process.wait(timeout=30) == -9
        assert bytes(received) == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
