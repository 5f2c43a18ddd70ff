"""The peer protocol, sans-io: bytes in, events out, bytes out (DESIGN.md §5).

Two gateways speak HTTP/1.1 (framed by h11) over mutual TLS with ALPN ``clusterlink/1``:

    dialer (PeerClientConnection)            listener (PeerServerConnection)
    GET /healthz                  ───────▶   HealthRequest
    Health {name, labels, version} ◀───────  send_health(...)
    ... (heartbeats reuse the connection)
    CONNECT ns/name + attributes  ───────▶   ConnectRequest
    Verdict 200                   ◀───────   send_verdict(Verdict.allow())
    raw tunnel bytes              ◀──────▶   raw tunnel bytes (start with trailing_data)

    or, instead of the CONNECT, once: a peer presenting an invitation
    POST /link {token, name, ...} ───────▶   LinkRequest
    LinkAnswer {name, labels, ...} ◀───────  send_link_answer(...), then close

A refusal (400, 403, 404, 502, 503, ...) carries ``{reason, message}`` and closes the
connection. One round trip both authorizes and opens the tunnel: the connection that carried
the CONNECT is the data path.

This package never touches a socket, a clock or a logger, so the data plane and transport
own all I/O and timeouts, and every protocol rule is a unit test over byte strings. It
depends on h11, the standard library and ``clusterlink.errors`` only.
"""

from clusterlink.protocol.attributes import decode_attributes, encode_attributes
from clusterlink.protocol.client import ClientEvent, PeerClientConnection
from clusterlink.protocol.events import (
    CLOSED,
    NEED_DATA,
    PROTOCOL_ATTRIBUTE,
    ConnectRequest,
    ExportRef,
    Health,
    HealthRequest,
    LinkAnswer,
    LinkRequest,
    Signal,
    Verdict,
)
from clusterlink.protocol.server import PeerServerConnection, ServerEvent
from clusterlink.protocol.wire import (
    ALPN_PROTOCOL,
    ATTRIBUTES_HEADER,
    MAX_ATTRIBUTE_BYTES,
    MAX_ATTRIBUTE_ENTRIES,
    MAX_HEAD_BYTES,
)

__all__ = [
    "ALPN_PROTOCOL",
    "ATTRIBUTES_HEADER",
    "CLOSED",
    "MAX_ATTRIBUTE_BYTES",
    "MAX_ATTRIBUTE_ENTRIES",
    "MAX_HEAD_BYTES",
    "NEED_DATA",
    "PROTOCOL_ATTRIBUTE",
    "ClientEvent",
    "ConnectRequest",
    "ExportRef",
    "Health",
    "HealthRequest",
    "LinkAnswer",
    "LinkRequest",
    "PeerClientConnection",
    "PeerServerConnection",
    "ServerEvent",
    "Signal",
    "Verdict",
    "decode_attributes",
    "encode_attributes",
]
