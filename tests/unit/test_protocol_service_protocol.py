"""The service protocol a tunnel request carries: UDP said, TCP when unsaid (older gateways),
and an unknown value read as none, so that the exporting gateway refuses instead of guessing.
Both tunnel modes carry it: the basic mode's CONNECT and the multiplexed mode's OPEN."""

from __future__ import annotations

import pytest

from clusterlink.protocol import (
    PROTOCOL_ATTRIBUTE,
    ConnectRequest,
    ExportRef,
    PeerClientConnection,
    PeerServerConnection,
)
from clusterlink.protocol.mux_frames import open_payload, parse_open

DNS = ExportRef("default", "dns")


@pytest.mark.parametrize(
    ("attributes", "protocol"),
    [
        ({}, "TCP"),
        ({PROTOCOL_ATTRIBUTE: "TCP"}, "TCP"),
        ({PROTOCOL_ATTRIBUTE: "UDP"}, "UDP"),
        ({PROTOCOL_ATTRIBUTE: "SCTP"}, None),
        ({PROTOCOL_ATTRIBUTE: "udp"}, None),
    ],
)
def test_a_request_names_its_protocol(attributes: dict[str, str], protocol: str | None) -> None:
    assert ConnectRequest(DNS, attributes).protocol == protocol


def test_the_basic_modes_connect_carries_udp() -> None:
    client, server = PeerClientConnection("b"), PeerServerConnection()

    server.receive_data(client.connect_request(DNS, {PROTOCOL_ATTRIBUTE: "UDP"}))

    request = server.next_event()
    assert isinstance(request, ConnectRequest)
    assert (request.export, request.protocol) == (DNS, "UDP")


def test_the_multiplexed_modes_open_carries_udp() -> None:
    request = parse_open(open_payload(DNS, {PROTOCOL_ATTRIBUTE: "UDP"}))

    assert (request.export, request.protocol) == (DNS, "UDP")


def test_a_request_from_a_gateway_that_knows_only_tcp_is_tcp() -> None:
    assert parse_open(open_payload(DNS, {})).protocol == "TCP"
