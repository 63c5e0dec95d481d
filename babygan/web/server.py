"""Bind the socket and run uvicorn until Ctrl+C / SIGTERM."""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Callable

from babygan.errors import BabyganError
from babygan.web.service import WebService


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.x, ::1, "localhost")."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BabyganError(f"--host {host}: cannot resolve it ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listen before the address is printed: a client that connects at once waits in the
        # backlog until uvicorn accepts, rather than being refused.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise BabyganError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Stop(Exception):
    """SIGTERM, re-raised by uvicorn once it has shut down."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def run(service: WebService, sock: socket.socket, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``service`` on ``sock`` until Ctrl+C or SIGTERM, then return normally.

    uvicorn shuts down gracefully on either signal and then raises the signal again for
    the handler that was there before it: for SIGTERM, by default, that kills the process
    before the caller's clean-up runs, so a handler of ours turns it into an exception.
    """
    import uvicorn

    from babygan.web.app import create_app

    config = uvicorn.Config(
        create_app(service),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(url_of(sock))
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
