"""Serving an aiohttp application on a socket we bind ourselves (admin API, metrics).

Why bind ourselves: the gateway reports the address actually bound (port 0 -> the kernel's
pick) in ``gateway.json``, and a bind error must surface as an ``OSError`` before anything is
served, so that the gateway can name the flag that asked for the address.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web

__all__ = ["serve_app"]

SiteFactory = Callable[[web.BaseRunner, socket.socket], web.BaseSite]


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_app(
    app: web.Application, host: str, port: int, *, site: SiteFactory = web.SockSite
) -> tuple[web.AppRunner, tuple[str, int]]:
    """Serve ``app`` on ``host:port``: its runner (``cleanup()`` stops it) and the address."""
    sock = _bound_socket(host, port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await site(runner, sock).start()
    return runner, sock.getsockname()[:2]
