"""The ALPN offer read from a ClientHello's bytes (made by Python's own TLS, no sockets)."""

from __future__ import annotations

import ssl

import pytest

from clusterlink.protocol.client_hello import offered_alpn


def client_hello(protocols: list[str]) -> bytes:
    """The first bytes a TLS client sends, offering ``protocols``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if protocols:
        context.set_alpn_protocols(protocols)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="b")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    "protocols",
    [["clusterlink-mux/1"], ["clusterlink-mux/1", "clusterlink/1"], ["clusterlink/1"], []],
)
def test_the_offer_is_read_in_order(protocols: list[str]) -> None:
    assert offered_alpn(client_hello(protocols)) == tuple(protocols)


def test_a_client_hello_not_all_there_is_unknown() -> None:
    hello = client_hello(["clusterlink-mux/1"])
    for cut in (0, 4, 5, 40, len(hello) - 1):
        assert offered_alpn(hello[:cut]) is None, cut


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\nHost: b\r\n\r\n", b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", bytes(600)],
)
def test_anything_else_is_unknown(data: bytes) -> None:
    assert offered_alpn(data) is None


def test_a_broken_alpn_list_is_unknown() -> None:
    hello = bytearray(client_hello(["ab"]))
    at = bytes(hello).index(b"\x02ab")
    hello[at] = 9  # a name longer than what is left
    assert offered_alpn(bytes(hello)) is None
