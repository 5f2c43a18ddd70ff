"""The data path of an allowed tunnel, and how it fails (DESIGN §5), seen from the client.

Bytes must arrive unchanged and in full, a half-close must cross the tunnel in either
direction (asyncio's TLS transport cannot do it, so this is where our own TLS layer is
proven), and a tunnel that cannot be opened must reset the client with the reason in the log.
All of it in both tunnel modes of the source gateway: ``basic`` (a TLS connection per tunnel)
and ``mux`` (streams of one multiplexed connection).
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.clients import Exchange, is_refused, talk
from tests.integration.conftest import Link, StartService, every_tunnel_mode
from tests.integration.services import SendThenListen, closed_port, digest, echo, read_to_eof
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

REFUSED = Exchange(b"", "reset")
MB = 1024 * 1024


# Every test here runs with one TLS connection per tunnel and with multiplexed streams.
tunnel_mode = every_tunnel_mode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(data: bytes) -> tuple[int, str]:
    """Length and digest: comparable like the bytes, but short in a failure message."""
    return len(data), sha256(data)


def test_20_mb_of_random_bytes_come_back_byte_identical(
    link: Link, start_service: StartService
) -> None:
    payload = os.urandom(20 * MB)
    address = link.open("echo", start_service(echo).port, allow=True)

    got = talk(address, payload, timeout_s=60)

    assert (fingerprint(got.received), got.end) == (fingerprint(payload), "eof")
    closed = link.egress_log("echo", "closed")
    assert f"bytes_up={len(payload)} bytes_down={len(payload)} " in closed
    assert "error=" not in closed


def test_client_half_close_still_gets_the_whole_reply(
    link: Link, start_service: StartService
) -> None:
    """The service answers only after it has read to EOF, so the client's shutdown(SHUT_WR)
    must reach it through the tunnel while the way back stays open."""
    payload = os.urandom(MB)
    address = link.open("digest", start_service(digest).port, allow=True)

    got = talk(address, payload, half_close=True)

    assert got == Exchange(f"{len(payload)} {sha256(payload)}\n".encode(), "eof")


def test_service_half_close_lets_the_client_keep_sending(
    link: Link, start_service: StartService
) -> None:
    """The service speaks first and shuts its write side; the client reads the greeting to EOF
    and only then sends, and the service still receives every byte."""
    service = SendThenListen(b"hello from the service\n", shut_write=True)
    address = link.open("greeter", start_service(service).port, allow=True)
    payload = os.urandom(256 * 1024)

    with socket.create_connection(address, timeout=10) as sock:
        greeting = read_to_eof(sock)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        tail = read_to_eof(sock)

    assert (greeting, tail) == (b"hello from the service\n", b"")
    try:
        received = service.received.get(timeout=10)
    except queue.Empty:
        pytest.fail("the service never saw the client's EOF")
    assert fingerprint(received) == fingerprint(payload)


def test_import_of_an_unknown_export_is_reset_and_target_says_not_found(link: Link) -> None:
    address = link.import_("nosuch")
    link.allow_both()

    assert talk(address, b"hello") == REFUSED
    assert link.ingress_log("nosuch", "refused").endswith(": no such export")
    assert "answered 404 not-found" in link.egress_log("nosuch", "refused")


def test_export_of_a_service_that_is_down_is_reset_and_logged_unreachable(link: Link) -> None:
    port = closed_port()
    address = link.open("down", port, allow=True)

    assert talk(address, b"hello") == REFUSED
    failed = link.ingress_log("down", "failed")
    assert failed.endswith(
        f"service of export {link.namespace}/down at 127.0.0.1:{port}: connection refused"
    )
    assert "answered 502 unreachable" in link.egress_log("down", "refused")


def test_deleting_an_import_closes_its_listener(link: Link, start_service: StartService) -> None:
    address = link.open("echo", start_service(echo).port, allow=True)
    assert talk(address, b"hello") == Exchange(b"hello", "eof")

    link.source.delete("import", "echo", link.namespace)

    wait_until(lambda: is_refused(address), what=f"{address} refuses connections", timeout_s=5)
    assert link.source.wait_for_log(f"import {link.namespace}/echo deleted: stopped listening")


def test_concurrent_connections_each_get_their_own_bytes(
    link: Link, start_service: StartService
) -> None:
    address = link.open("echo", start_service(echo).port, allow=True)
    payloads = [os.urandom(64 * 1024) for _ in range(16)]

    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        results = list(pool.map(lambda payload: talk(address, payload), payloads))

    assert [(fingerprint(r.received), r.end) for r in results] == [
        (fingerprint(p), "eof") for p in payloads
    ]


def _half_close_with_the_reply_backed_up(address: tuple[str, int]) -> Exchange:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # fills up quickly
        sock.settimeout(10)
        sock.connect(address)
        received = bytearray(sock.recv(1))  # the tunnel is open and the reply on its way
        # A slow consumer: it reads nothing for a while, so the reply backs up through the
        # tunnel towards the service (the gateway's TLS reading pauses, at a point that the
        # test cannot choose: tests/component/test_transport_tls.py pins the hard one down).
        time.sleep(0.3)  # the client's slowness is the scenario, not a wait for an event
        sock.sendall(b"done")
        sock.shutdown(socket.SHUT_WR)
        try:
            received += read_to_eof(sock)
        except ConnectionResetError:
            return Exchange(bytes(received), "reset")
        return Exchange(bytes(received), "eof")


def test_client_half_close_while_the_reply_is_backed_up_loses_nothing(
    link: Link, start_service: StartService
) -> None:
    """Clients let the reply back up through the tunnel, shut their write side, and only then
    read: each gets every byte, then a clean EOF.

    The source gateway's TLS layer then sends close_notify with its reading paused: unread
    ciphertext waits in its buffer, and often the plaintext of a half-read record inside
    OpenSSL, which used to make OpenSSL fail the connection: most of these clients were
    reset after their first byte. The reply is larger than the socket buffers on the way
    can hold, so that the gateway must pause, and there are several clients, so that one
    run is a sure test.
    """
    reply = os.urandom(16 * MB)
    service = SendThenListen(reply, shut_write=False)
    address = link.open("stream", start_service(service).port, allow=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_half_close_with_the_reply_backed_up, [address] * 8))

    expected = (fingerprint(reply), "eof")
    assert [(fingerprint(r.received), r.end) for r in results] == [expected] * len(results)
    assert [service.received.get(timeout=10) for _ in results] == [b"done"] * len(results)
