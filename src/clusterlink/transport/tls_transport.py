"""The application's view of a ``TLSLayer``: ``TLSTransport``, plain bytes in and out.

Why apart from ``tls``: this is the whole surface the application (a relay, a
``MuxSession``, aiohttp) touches, and it holds nothing but a reference to its layer: every
call is passed straight on. Being stateless is what lets the layer hold it weakly and make a
new one whenever the last was dropped (see the invariants in ``tls``), so it must never gain
state: anything to remember belongs to the layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clusterlink.transport.tls import TLSLayer

__all__ = ["LOST_APP", "TLSTransport"]

# The app of a lost connection: the layer lets go of the real one (see the invariants in
# ``tls``), and ``get_protocol`` then answers None.
LOST_APP = asyncio.Protocol()


class TLSTransport(asyncio.Transport):
    """The application's view of a ``TLSLayer``: plain bytes in and out."""

    __slots__ = ("__weakref__", "_layer")

    def __init__(self, layer: TLSLayer) -> None:
        super().__init__()
        self._layer = layer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer.write_plain(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Encrypt every buffer, then one write to the socket (no join of the buffers)."""
        self._layer.write_plain_many(list_of_data)

    def write_eof(self) -> None:
        self._layer.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._layer.close()

    def abort(self) -> None:
        self._layer.abort()

    def is_closing(self) -> bool:
        return self._layer.is_closing()

    def pause_reading(self) -> None:
        self._layer.pause_reading()

    def resume_reading(self) -> None:
        self._layer.resume_reading()

    def is_reading(self) -> bool:
        return not self._layer.reading_paused

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._layer.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        # None once the connection is lost, as asyncio's and uvloop's TCP transports do.
        app = self._layer.app
        return None if app is LOST_APP else app  # type: ignore[return-value]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._layer.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._layer.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._layer.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._layer.raw.get_write_buffer_limits()
