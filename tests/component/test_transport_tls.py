"""TLSLayer over real loopback sockets, with real fabric certificates, on asyncio and uvloop.

What a tunnel relies on from its TLS, each checked from the application's side of
``TLSTransport``: the connection ending by itself once close_notify went both ways, ``close``
sending close_notify, back-pressure that passes through (a paused reader stops delivery and,
through the kernel buffers, stops the writer), pausing inside a record and half-closing there,
the application seeing the connection only after a verified handshake, failed and timed-out
handshakes surfacing on ``handshake_done``, and a TCP end without close_notify reported as a
reset, never as a clean EOF. Half-close in each direction with the reply still flowing, resets
passing as resets, and an application that keeps no half-open connection are checked over a
TLS side of a tunnel by the relay conformance checks (test_relay.py, kinds ``tcp-tls`` and
``tls-tcp``).
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import ssl
import struct
import termios
from dataclasses import dataclass

import pytest

from clusterlink.certs import peer_name_of
from clusterlink.protocol import ALPN_PROTOCOL
from clusterlink.transport.tls import TLSLayer
from tests.component._net import (
    WAIT_S,
    Endpoint,
    Fabric,
    Run,
    connect_tcp,
    connect_tls,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    listen,
    pattern,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
    tls_server_factory,
    until,
)

pytestmark = pytest.mark.component


@dataclass
class Pair:
    client: Endpoint
    server: Endpoint
    client_layer: TLSLayer
    server_layer: TLSLayer


TCP_CLOSE_WAIT = 8  # tcp_states.h: the other side's FIN has arrived


def unacknowledged_bytes(layer: TLSLayer) -> int:
    """What ``layer`` wrote that the other side's kernel has not yet taken: its transport's
    buffer and its socket's send queue (SIOCOUTQ). Zero: all of it is in the other socket."""
    raw = layer.raw
    queue = fcntl.ioctl(raw.get_extra_info("socket").fileno(), termios.TIOCOUTQ, bytes(4))
    return raw.get_write_buffer_size() + int(struct.unpack("i", queue)[0])


def tcp_state(layer: TLSLayer) -> int:
    """The kernel's TCP state of ``layer``'s socket (``TCP_INFO``'s first byte)."""
    info = layer.raw.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return int(info[0])


async def tls_pair(fabric: Fabric, client: Endpoint, server: Endpoint) -> Pair:
    """A handshaken client/server pair: client "a" talks to server "b"."""
    layers: list[TLSLayer] = []
    _, port = await listen(tls_server_factory(fabric.server(), lambda: server, layers))
    client_layer = await connect_tls(port, client, fabric.client())
    async with asyncio.timeout(WAIT_S):
        await client_layer.handshake_done
        await server.made
    return Pair(client, server, client_layer, layers[0])


class _RecordsIdentityOnConnect(Endpoint):
    """Notes what the transport can tell about the other side at ``connection_made`` time."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer_at_connect = peer_name_of(transport.get_extra_info("peercert"))
        self.alpn_at_connect = transport.get_extra_info("alpn_protocol")
        super().connection_made(transport)


def test_application_sees_the_connection_only_after_a_verified_handshake(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        client, server = _RecordsIdentityOnConnect(), _RecordsIdentityOnConnect()
        pair = await tls_pair(fabric, client, server)
        # The certificate the application reads is the verified one, named by the fabric.
        assert (client.peer_at_connect, server.peer_at_connect) == ("b", "a")
        assert client.alpn_at_connect == server.alpn_at_connect == ALPN_PROTOCOL
        assert pair.client_layer.handshake_done.result() is None
        assert pair.server_layer.handshake_done.result() is None

    run(scenario())


def test_close_notify_both_ways_ends_the_connection_cleanly_without_a_close(
    run: Run, fabric: Fabric
) -> None:
    """Once each side has sent its close_notify, the layer itself ends the connection: both
    applications are told once, without an error, and neither had to call ``close``."""

    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(), Endpoint())
        pair.client.transport.write_eof()
        assert await pair.server.read_to_eof() == b""
        assert not pair.server.lost.done()  # half-closed: the server may still answer
        await pair.server.send(b"answer after the client's end")
        pair.server.transport.write_eof()

        assert await pair.client.read_to_eof() == b"answer after the client's end"
        assert await pair.client.wait_lost() is None
        assert await pair.server.wait_lost() is None
        assert pair.client.n_lost == pair.server.n_lost == 1

    run(scenario())


def test_close_sends_close_notify_so_the_peer_sees_a_clean_eof(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(), Endpoint())
        await pair.server.send(b"last words")
        pair.server.transport.close()
        assert await pair.client.read_to_eof() == b"last words"
        assert await pair.server.wait_lost() is None

    run(scenario())


def test_paused_reader_stops_delivery_and_back_pressure_reaches_the_writer(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(), Endpoint(paused=True))
        # More than loopback's socket buffers can hold, so the writer must be stopped.
        data = pattern(32 * 1024 * 1024, 4)
        sender = asyncio.create_task(pair.client.send(data))

        await until(lambda: pair.client.is_write_paused)
        stalled_at = pair.client_layer.raw.get_write_buffer_size()
        await asyncio.sleep(0.05)  # an absence: a stretch in which nothing may be delivered
        assert pair.server.received == b""  # nothing delivered while paused
        assert not pair.server_layer.raw.is_reading()  # the socket itself is not read
        assert pair.client.is_write_paused
        assert not sender.done()
        # The writer's own buffer stays near its high-water mark: one 64 KiB chunk over it,
        # plus TLS record overhead.
        high = pair.client_layer.raw.get_write_buffer_limits()[1]
        assert stalled_at <= high + 64 * 1024 + 4096
        assert pair.client.transport.get_write_buffer_size() <= high + 64 * 1024 + 4096

        pair.server.release()
        async with asyncio.timeout(WAIT_S):
            await sender
        pair.client.transport.write_eof()
        assert await pair.server.read_to_eof() == data
        assert pair.server.bytes_while_paused == 0

    run(scenario())


class _PausesAfterEveryChunk(Endpoint):
    """Pauses inside ``data_received`` and resumes on the next loop turn."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self.transport.resume_reading)


def test_reader_pausing_inside_data_received_gets_every_byte_once_in_order(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(), _PausesAfterEveryChunk())
        data = pattern(4 * 1024 * 1024, 5)
        await pair.client.send(data)
        pair.client.transport.write_eof()
        assert await pair.server.read_to_eof() == data
        assert pair.server.bytes_while_paused == 0

    run(scenario())


def test_data_and_close_notify_that_arrive_while_paused_are_delivered_on_resume(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(), Endpoint())
        pair.client.transport.pause_reading()
        data = pattern(100_000, 6)
        await pair.server.send(data)
        pair.server.transport.write_eof()
        await until(lambda: unacknowledged_bytes(pair.server_layer) == 0)  # in the client's socket
        assert not pair.client.eof.is_set()
        pair.client.transport.resume_reading()
        assert await pair.client.read_to_eof() == data
        assert pair.client.bytes_while_paused == 0

    run(scenario())


class _PausesInsideARecord(Endpoint):
    """Pauses (and stays paused) at the first delivery after which OpenSSL still holds
    decrypted plaintext of a half-read record: the state in which sending close_notify used
    to make OpenSSL fail the connection and drop the rest of the peer's stream."""

    def __init__(self) -> None:
        super().__init__()
        self.paused_inside_a_record = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        ssl_object = self.transport.get_extra_info("ssl_object")
        if not self.paused_inside_a_record and ssl_object.pending():
            self.paused_inside_a_record = True
            self.transport.pause_reading()


@pytest.mark.parametrize("peer_ends", ["before", "after"])
def test_half_close_while_paused_inside_a_record_loses_nothing(
    run: Run, fabric: Fabric, peer_ends: str
) -> None:
    """Our write_eof while reading is paused with plaintext of a record already decrypted,
    and the rest of the peer's stream (with its close_notify, ``before``) waiting unread or
    still to come (``after``): every byte still arrives, then a clean EOF and a clean end."""

    async def scenario() -> None:
        client = _PausesInsideARecord()
        pair = await tls_pair(fabric, client, Endpoint())
        # "before": small enough for the socket buffers to take it all while we are paused.
        data = pattern(256 * 1024 if peer_ends == "before" else 4 * 1024 * 1024, 7)
        sender = asyncio.create_task(pair.server.send(data))
        await until(lambda: client.paused_inside_a_record)
        if peer_ends == "before":
            async with asyncio.timeout(WAIT_S):
                await sender
            pair.server.transport.write_eof()
            await until(lambda: pair.server_layer.raw.get_write_buffer_size() == 0)
        ssl_object = pair.client.transport.get_extra_info("ssl_object")
        assert ssl_object.pending() > 0  # the state this test is about

        pair.client.transport.write_eof()  # our close_notify, the peer's stream unread
        assert await pair.server.read_to_eof() == b""
        pair.client.release()
        if peer_ends == "after":
            async with asyncio.timeout(WAIT_S):
                await sender
            pair.server.transport.write_eof()

        assert await pair.client.read_to_eof() == data
        assert await pair.client.wait_lost() is None
        assert await pair.server.wait_lost() is None

    run(scenario())


def test_a_client_of_another_fabric_fails_the_servers_handshake(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        server_apps: list[Endpoint] = []
        layers: list[TLSLayer] = []

        def app() -> Endpoint:
            server_apps.append(Endpoint())
            return server_apps[-1]

        _, port = await listen(tls_server_factory(fabric.server(), app, layers))
        client = Endpoint()
        client_layer = await connect_tls(port, client, fabric.client(fabric.stranger))
        await until(lambda: bool(layers))
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(ssl.SSLError):
                await layers[0].handshake_done
        assert not server_apps[0].made.done()  # the server app never saw the stranger

        # In TLS 1.3 the client may believe its handshake finished before the server
        # checked its certificate; then the server's alert must end the connection with an
        # error, never with a clean EOF.
        async with asyncio.timeout(WAIT_S):
            try:
                await client_layer.handshake_done
            except (ssl.SSLError, ConnectionError):
                assert not client.made.done()
            else:
                assert isinstance(await client.wait_lost(), Exception)
                assert not client.eof.is_set()

    run(scenario())


def test_a_server_with_the_wrong_name_fails_the_clients_handshake(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        _, port = await listen(tls_server_factory(fabric.server(), Endpoint, []))
        client = Endpoint()
        layer = await connect_tls(port, client, fabric.client(), server_hostname="c")
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(ssl.SSLCertVerificationError):
                await layer.handshake_done
        assert not client.made.done()

    run(scenario())


@pytest.mark.parametrize("silent", ["server", "client"])
def test_handshake_times_out_against_a_side_that_never_speaks(
    run: Run, fabric: Fabric, silent: str
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        app, mute = Endpoint(), Endpoint()  # ``mute`` is plain TCP and says nothing
        timeout_s = 0.2
        if silent == "server":
            _, port = await listen(lambda: mute)
            layer = await connect_tls(port, app, fabric.client(), handshake_timeout_s=timeout_s)
        else:
            layers: list[TLSLayer] = []

            def factory() -> TLSLayer:
                layers.append(
                    TLSLayer(fabric.server(), app, server_side=True, handshake_timeout_s=timeout_s)
                )
                return layers[0]

            _, port = await listen(factory)
            await connect_tcp(port, mute)
            await until(lambda: bool(layers))
            layer = layers[0]
        started = loop.time()
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(TimeoutError):
                await layer.handshake_done
        assert loop.time() - started >= timeout_s * 0.5
        assert not app.made.done()
        # The socket is closed: the silent side sees the connection end.
        async with asyncio.timeout(WAIT_S):
            await mute.eof.wait()

    run(scenario())


@pytest.mark.parametrize("paused", [False, True], ids=["reading", "paused"])
def test_tcp_end_without_close_notify_is_a_reset_not_an_eof(
    run: Run, fabric: Fabric, paused: bool
) -> None:
    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(paused=paused), Endpoint())
        await pair.server.send(b"partial ans")
        await until(lambda: unacknowledged_bytes(pair.server_layer) == 0)  # the bytes arrived
        pair.server_layer.raw.close()  # TCP FIN, but no close_notify: a truncation
        if paused:
            await until(lambda: tcp_state(pair.client_layer) == TCP_CLOSE_WAIT)  # so did the FIN
            pair.client.release()
        exc = await pair.client.wait_lost()
        assert isinstance(exc, ConnectionResetError)
        assert not pair.client.eof.is_set()
        assert pair.client.received == b"partial ans"  # what did arrive is still delivered
        assert pair.client.n_lost == 1

    run(scenario())


def test_close_with_the_peer_still_writing_delivers_everything_queued(
    run: Run, fabric: Fabric
) -> None:
    """We close (close_notify, nothing more to say) while much of our stream still waits in
    the socket buffers for a slow reader, and the peer writes to us meanwhile (a multiplexed
    connection's window updates, say). A socket closed with unread input answers with a RST,
    and the kernel then drops every byte of ours it still queued: the peer must instead get
    all of them and a clean end."""

    async def scenario() -> None:
        pair = await tls_pair(fabric, Endpoint(paused=True), Endpoint())
        data = pattern(8 * 1024 * 1024, 8)
        pair.server.transport.write(data)  # more than the socket buffers take: most waits
        pair.server.transport.close()  # the rest is still queued
        await pair.client.send(b"window update")  # reaches a side that is done reading

        pair.client.release()
        assert await pair.client.read_to_eof() == data
        assert await pair.server.wait_lost() is None
        pair.client.transport.close()
        assert await pair.client.wait_lost() is None

    run(scenario())
