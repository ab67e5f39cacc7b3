"""One benchmark server process: ``python -m benchmarks.serve KIND --fd N ...``.

The driver binds the listening socket and hands the same descriptor to every process of a
target, so several processes share one accept queue (waitress has no SO_REUSEPORT option,
but it serves pre-bound ``sockets``). Each process builds its own app and engine.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from appserver.serve import create_server


def build_app(args: argparse.Namespace):
    if args.kind == "bare-json":
        from .anchors import bare_json_app

        return bare_json_app()
    if args.kind == "bare-cookie":
        from .anchors import bare_cookie_app

        return bare_cookie_app(args.url, args.cookie_name, args.pool_size)
    if args.kind == "driver-cookie":
        from .anchors import driver_cookie_app

        return driver_cookie_app(args.url, args.cookie_name)
    from pyramid.paster import get_app

    from .servers import production_environment

    os.environ.update(production_environment(args.url))
    return get_app(args.config, "main")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serve")
    parser.add_argument("kind", choices=["bare-json", "bare-cookie", "driver-cookie", "app"])
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--switch-interval", type=float, default=None)
    parser.add_argument("--url", default="")
    parser.add_argument("--config", default="production.ini")
    parser.add_argument("--cookie-name", default="__Host-appserver.session")
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    # "Task queue depth is N" on every busy moment: the load is deliberate here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = build_app(args)
    sock = socket.socket(fileno=args.fd)
    server = create_server(app, sockets=[sock], threads=args.threads, ident="benchmark")
    print("ready", flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
