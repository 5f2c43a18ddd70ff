"""Services and clients living in sites, for the multisite tests.

They are the integration suite's services and clients, made inside a site with ``entered``:
a socket stays in the namespace it was created in, so a service made that way serves there
and a client connects from there, while the test drives both from its own thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.integration.clients import Exchange, talk
from tests.integration.documents import Document, export
from tests.integration.services import Handler, TCPService
from tests.integration.waiting import wait_until
from tests.multisite.netns import Site, entered

__all__ = [
    "Attempt",
    "ClientLoop",
    "ServeIn",
    "answer_with_name",
    "connect_in",
    "serve_in",
    "talk_in",
    "web_export",
]

ServeIn = Callable[[str, Handler], TCPService]
"""The ``serve`` fixture: ``serve(site_name, handler)`` starts a service inside that site."""


def answer_with_name(name: str) -> Handler:
    """A service that answers every connection with ``name`` and closes: says who served."""

    def answer(sock: socket.socket) -> None:
        sock.sendall(name.encode())

    return answer


def serve_in(site: Site, handle: Handler) -> TCPService:
    """A TCP service on 127.0.0.1 inside ``site`` (the caller closes it)."""
    with entered(site):
        return TCPService(handle)


def talk_in(site: Site, address: tuple[str, int], payload: bytes = b"", **kw: Any) -> Exchange:
    """``talk`` from a client inside ``site``."""
    with entered(site):
        return talk(address, payload, **kw)


def connect_in(site: Site, address: tuple[str, int], timeout_s: float = 10) -> socket.socket:
    """A connected TCP socket of a client inside ``site``; the caller closes it."""
    with entered(site):
        return socket.create_connection(address, timeout=timeout_s)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One connection of a ``ClientLoop``: when it started and ended (``time.time()``), who
    answered (the service's name) and how it ended."""

    started: float
    ended: float
    served_by: str
    end: str


class ClientLoop:
    """A client in ``site`` that connects to ``address`` again and again, in a thread, and
    records every attempt, while the ``with`` block runs (at most ``max_attempts``)."""

    def __init__(
        self,
        site: Site,
        address: tuple[str, int],
        *,
        pause_s: float = 0.05,
        max_attempts: int = 2000,
        timeout_s: float = 20,
    ) -> None:
        self.site = site
        self.address = address
        self.pause_s = pause_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.attempts: list[Attempt] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.timeout_s + 5)

    def _run(self) -> None:
        while not self._stopping.is_set() and len(self.attempts) < self.max_attempts:
            started = time.time()
            exchange = talk_in(self.site, self.address, timeout_s=self.timeout_s)
            served_by = exchange.received.decode(errors="replace")
            self.attempts.append(Attempt(started, time.time(), served_by, exchange.end))
            self._stopping.wait(self.pause_s)

    def first(self, *, started_after: float, served_by: str, timeout_s: float = 20) -> Attempt:
        """The first attempt started after ``started_after`` that ``served_by`` answered,
        once there is one (bounded wait)."""

        def find() -> Attempt | None:
            matching = (
                attempt
                for attempt in list(self.attempts)
                if attempt.started > started_after and attempt.served_by == served_by
            )
            return next(matching, None)

        return wait_until(
            find,
            what=f"a connection started after {started_after:.3f} served by {served_by!r}",
            timeout_s=timeout_s,
            describe=lambda _: str(self.attempts[-5:]),
        )

    def between(self, start: float, end: float) -> list[Attempt]:
        """The attempts that started in [start, end)."""
        return [attempt for attempt in list(self.attempts) if start <= attempt.started < end]


def web_export(serve: ServeIn, site_name: str, answer: str | None = None) -> Document:
    """An Export ``default/web`` of a new service in the site that answers every connection
    with ``answer`` (default: the site's name), so a client sees which site served it."""
    service = serve(site_name, answer_with_name(answer or site_name))
    return export("web", "default", service.port)
