"""Free TCP ports for the servers and tunnel ends of one run.

stunnel and HAProxy need their ports written into their configuration before they start, so
ports are chosen up front: the kernel picks a free one (bind to port 0 on 127.0.0.1) and we
release it at once. On loopback a port could in theory be taken by someone else in between;
the process that then fails to bind says so in its log, and the run stops with that message.
In the netns topology every port is free anyway (fresh namespaces). A run never hands out the
same port twice.
"""

from __future__ import annotations

import socket

__all__ = ["PortPicker"]


class PortPicker:
    def __init__(self) -> None:
        self._given: set[int] = set()

    def pick(self) -> int:
        """A port that is free now and that this run has not handed out before."""
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
