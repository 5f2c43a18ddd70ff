"""Hostile input on the peer listener, against real gateways.

Gateway ``b`` faces callers that send garbage instead of TLS, stall their handshake, trickle
a request head, send oversized or unknown requests, break the mux framing, storm it with
OPENs, or open streams and never read. Each must get a bounded wait, a clear status or a
closed connection, and a log line -- a few lines, not one per attempt -- while a valid tunnel
from gateway ``a`` keeps working: each test checks that tunnel during or right after its
attack. The attacker is a member of the fabric where it needs to be (certificate of peer
``c``, a Peer of ``b``), which is the harder case: it gets past the TLS layer.

``b`` runs with short timeouts (1 s handshake, 1 s request head) and a per-peer limit of 20
tunnels, so that each behaviour shows within a generous bound.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.clients import (
    Exchange,
    http_over_tls,
    talk,
    tls_client_context,
)
from tests.integration.conftest import Link, Pair, StartGateway, StartService
from tests.integration.documents import access_policy, export, peer
from tests.integration.gateways import Fabric, Gateway
from tests.integration.hostile import (
    BASIC_ALPN,
    DATA,
    MUX_ALPN,
    VERDICT,
    WINDOW,
    Firehose,
    client_hello,
    ending,
    frame,
    metric,
    open_frame,
    raw,
    read_frames,
    tls,
    verdict_of,
)
from tests.integration.hostile import settings as mux_settings
from tests.integration.services import SendThenListen, echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 1  # b's --handshake-timeout and --request-head-timeout
PER_PEER = 20  # b's --max-connections-per-peer
CLOSED = ("eof", "reset")
BOUND_S = 10.0  # "bounded": generous, so that a loaded machine does not fail the test
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def pair(start_gateway: StartGateway, fabric: Fabric) -> Pair:
    a = start_gateway("a", "--label", "site=a")
    b = start_gateway(
        "b",
        "--label",
        "site=b",
        "--handshake-timeout",
        str(TIMEOUT_S),
        "--request-head-timeout",
        str(TIMEOUT_S),
        "--max-connections-per-peer",
        str(PER_PEER),
        "--metrics-listen",
        "127.0.0.1:0",
    )
    fabric.peer_dir("c")
    a.apply(peer("b", b.listen))
    # c is known to b (so it gets past the Peer check), at an address where nothing listens.
    b.apply(peer("a", a.listen), peer("c", ("127.0.0.1", 9)))
    return Pair(source=a, target=b)


@pytest.fixture
def echo_import(link: Link, start_service: StartService) -> tuple[str, int]:
    """A valid tunnel a -> b, to show that b serves throughout."""
    return link.open("echo", start_service(echo).port, allow=True)


@pytest.fixture
def c_dir(fabric: Fabric) -> Path:
    return fabric.path / "c"


@pytest.fixture
def a_dir(fabric: Fabric) -> Path:
    return fabric.path / "a"


def serves(address: tuple[str, int]) -> None:
    payload = os.urandom(1000)
    assert talk(address, payload) == Exchange(payload, "eof")


def count(gateway: Gateway, text: str) -> int:
    return gateway.log().count(text)


def hits(gateway: Gateway, limit: str) -> float:
    return metric(gateway, "clusterlink_limit_hits_total", limit=limit)


# -- before TLS ------------------------------------------------------------------------------


def test_garbage_instead_of_tls_is_closed_and_logged(
    pair: Pair, echo_import: tuple[str, int]
) -> None:
    with raw(pair.target.listen) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: b\r\n\r\n" + os.urandom(200))
        got = ending(sock)

    assert got.end in CLOSED, got
    assert pair.target.wait_for_log(r"closed 127\.0\.0\.1:\d+: TLS handshake failed: ")
    serves(echo_import)


@pytest.mark.parametrize("sent", ["nothing", "half a ClientHello"])
def test_a_tls_handshake_that_never_finishes_is_closed_after_the_handshake_timeout(
    pair: Pair, echo_import: tuple[str, int], sent: str
) -> None:
    before = hits(pair.target, "handshake_timeout")
    with raw(pair.target.listen) as sock:
        if sent != "nothing":
            hello = client_hello()
            sock.sendall(hello[: len(hello) // 2])
        serves(echo_import)  # during
        got = ending(sock, wait_s=BOUND_S)

    assert (got.received, got.end) == (b"", "eof"), got
    assert pair.target.wait_for_log(rf"TLS handshake did not finish within {TIMEOUT_S}s")
    assert hits(pair.target, "handshake_timeout") > before
    serves(echo_import)


def test_a_flood_of_garbage_connections_logs_a_few_lines_not_one_each(
    pair: Pair, echo_import: tuple[str, int]
) -> None:
    line = "TLS handshake failed"
    before = count(pair.target, line)
    for _ in range(50):
        with raw(pair.target.listen) as sock:
            sock.sendall(os.urandom(64) + b"\r\n\r\n")
            assert ending(sock).end in CLOSED

    serves(echo_import)
    assert count(pair.target, line) - before <= 5  # the burst of one 10 s window


# -- basic mode ------------------------------------------------------------------------------


def test_a_request_head_that_never_ends_gets_408_after_the_head_timeout(
    pair: Pair, link: Link, echo_import: tuple[str, int], a_dir: Path
) -> None:
    """Slowloris: a byte every 0.1 s for up to 15 s; the deadline runs from the first byte."""
    before = hits(pair.target, "request_head_timeout")
    answer = bytearray()
    with tls(pair.target.listen, a_dir, BASIC_ALPN) as conn:
        conn.sendall(f"CONNECT {link.namespace}/echo HTTP/1.1\r\nhost: b\r\n".encode())
        started = time.monotonic()
        conn.settimeout(0.1)
        while time.monotonic() - started < 15:
            try:
                conn.sendall(b"x")
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            answer += chunk
        took_s = time.monotonic() - started

    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(body)["reason"] == "timeout"
    assert took_s < BOUND_S
    assert pair.target.wait_for_log(
        rf"refused request from peer a .*: the request head was not complete {TIMEOUT_S}s "
        "after its first byte"
    )
    assert hits(pair.target, "request_head_timeout") > before
    serves(echo_import)


def test_a_connection_between_requests_may_wait_longer_than_the_head_timeout(
    pair: Pair, a_dir: Path
) -> None:
    """The source gateway's warm connections idle until used: only a begun head has a
    deadline."""
    with tls(pair.target.listen, a_dir, BASIC_ALPN) as conn:
        time.sleep(TIMEOUT_S * 2.5)  # time passing is the point: idle past the timeout
        conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: b\r\n\r\n")
        got = ending(conn, wait_s=2)

    assert got.received.startswith(b"HTTP/1.1 200 "), got


def connect_header(value: str) -> tuple[tuple[str, str], ...]:
    return (("clusterlink-client-attributes", value),)


BAD_REQUESTS = {
    "oversized head": ("CONNECT", "{ns}/echo", (("x-big", "a" * 20_000),), 431, "too-large"),
    "unknown method": ("DELETE", "/healthz", (), 405, "unknown-method"),
    "unknown path": ("GET", "/admin", (), 404, "unknown-path"),
    "attributes not base64": ("CONNECT", "{ns}/echo", connect_header("!!!"), 400, "malformed"),
    "attributes not a map": (
        "CONNECT",
        "{ns}/echo",
        connect_header(base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=")),
        400,
        "malformed",
    ),
}


@pytest.mark.parametrize("bad", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_its_status_and_a_log_line(
    pair: Pair,
    link: Link,
    echo_import: tuple[str, int],
    a_dir: Path,
    bad: tuple[str, str, tuple[tuple[str, str], ...], int, str],
) -> None:
    method, target, headers, status, reason = bad
    context = tls_client_context(a_dir / "cert.pem", a_dir / "key.pem", alpn=BASIC_ALPN)
    before = count(pair.target, "refused request from peer a ")

    answer = http_over_tls(
        pair.target.listen,
        context,
        method=method,
        target=target.format(ns=link.namespace),
        headers=headers,
    )

    assert answer.status == status, answer
    assert json.loads(answer.body)["reason"] == reason
    wait_until(
        lambda: count(pair.target, "refused request from peer a ") > before,
        what="b logs the refusal",
    )
    serves(echo_import)


def test_a_refused_connect_with_bytes_behind_it_gets_its_answer_and_a_clean_end(
    pair: Pair, link: Link, a_dir: Path
) -> None:
    """The caller sends tunnel bytes right behind its CONNECT (a pipelining client), and the
    target refuses: those bytes are never read. The caller must still read the whole 404 and
    then a clean end (close_notify), whatever the target does about the unread bytes. (What
    they may send after the refusal is cut off: 64 KiB fit in the socket buffers, so the
    client's own send completes before the target closes.)"""
    head = f"CONNECT {link.namespace}/nosuch HTTP/1.1\r\nhost: b\r\n\r\n".encode()
    with tls(pair.target.listen, a_dir, BASIC_ALPN) as conn:
        conn.sendall(head + os.urandom(64 * 1024))
        answer = ending(conn, wait_s=BOUND_S)

    assert answer.received.startswith(b"HTTP/1.1 404 "), answer.received[:200]
    assert b'"reason":"not-found"' in answer.received.replace(b" ", b"")
    assert answer.end == "eof"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.binary(min_size=1, max_size=300)
    | st.lists(
        st.sampled_from(
            [
                *(b"GET ", b"CONNECT ", b"/healthz", b"default/echo", b" HTTP/1.1", b"\r\n"),
                *(b": ", b"content-length: 9", b"clusterlink-client-attributes: e30", b"\xff"),
            ]
        ),
        max_size=12,
    ).map(b"".join),
    st.sampled_from(["raw", "basic", "mux"]),
)
def test_generated_garbage_at_every_layer_never_hurts_the_gateway(
    pair: Pair, fabric: Fabric, garbage: bytes, layer: str
) -> None:
    """Whatever arrives (instead of TLS, as HTTP inside TLS, as mux frames), the answer is a
    4xx or a closed connection, or the gateway waits for more; it never crashes, and it still
    answers a heartbeat after each input."""
    b = pair.target
    a_dir = fabric.path / "a"
    connection = (
        raw(b.listen)
        if layer == "raw"
        else tls(b.listen, a_dir, BASIC_ALPN if layer == "basic" else MUX_ALPN)
    )
    with connection as sock:
        sock.sendall(garbage)
        got = ending(sock, wait_s=0.2)
    if layer == "basic" and got.received:
        assert got.received[:10] in (b"HTTP/1.1 4", b"HTTP/1.1 2"), got
    health = http_over_tls(
        b.listen,
        tls_client_context(a_dir / "cert.pem", a_dir / "key.pem", alpn=BASIC_ALPN),
        method="GET",
        target="/healthz",
    )
    assert health.status == 200, health


def test_no_input_so_far_left_a_traceback_in_the_log(pair: Pair) -> None:
    for gateway in (pair.source, pair.target):
        assert "Traceback" not in gateway.log()


# -- mux mode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        mux_settings(window=1 << 20) + frame(WINDOW, 0, b"\x00\x00\x00\x01"),
        mux_settings(window=1 << 20) + frame(VERDICT, 1, b"\x00\xc8"),
        os.urandom(64),
    ],
    ids=["window for stream 0", "a verdict from a client", "random bytes"],
)
def test_garbage_frames_close_that_connection_only(
    pair: Pair, echo_import: tuple[str, int], c_dir: Path, garbage: bytes
) -> None:
    before = count(pair.target, "closing multiplexed connection to c: ")
    with tls(pair.target.listen, c_dir, MUX_ALPN) as conn:
        conn.sendall(garbage)
        got = ending(conn)

    assert got.end in CLOSED, got
    wait_until(
        lambda: count(pair.target, "closing multiplexed connection to c: ") > before,
        what="b logs why it closed the connection",
    )
    serves(echo_import)


@pytest.mark.parametrize("kind", [DATA, 9], ids=["DATA", "unknown type"])
def test_a_huge_declared_frame_length_is_refused_on_its_header_alone(
    pair: Pair, echo_import: tuple[str, int], c_dir: Path, kind: int
) -> None:
    with tls(pair.target.listen, c_dir, MUX_ALPN) as conn:
        conn.sendall(frame(kind, 1, length=0xFFFFFF))  # 16 MiB announced, nothing sent
        got = ending(conn)

    assert got.end in CLOSED and got.after_s < BOUND_S, got
    assert pair.target.wait_for_log("too large|over the limit")
    serves(echo_import)


@pytest.fixture
def hold(link: Link, start_service: StartService) -> str:
    """An export on b whose service keeps every connection open, allowed for everyone."""
    service = start_service(SendThenListen(b"", shut_write=False))
    link.target.apply(
        export("hold", link.namespace, service.port),
        access_policy("allow-all", link.namespace, "allow"),
    )
    return f"{link.namespace}/hold"


def verdicts(conn: ssl.SSLSocket, n: int) -> collections.Counter[tuple[int, str]]:
    found: collections.Counter[tuple[int, str]] = collections.Counter()
    buffer = bytearray()
    for kind, _, payload in read_frames(conn, buffer):
        if kind == VERDICT:
            found[verdict_of(payload)] += 1
            if sum(found.values()) == n:
                break
    return found


def test_an_open_storm_beyond_the_per_peer_limit_is_answered_503(
    pair: Pair, echo_import: tuple[str, int], c_dir: Path, hold: str
) -> None:
    before_hits = hits(pair.target, "max_connections_per_peer")
    before_lines = count(pair.target, "(--max-connections-per-peer)")
    with tls(pair.target.listen, c_dir, MUX_ALPN) as conn:
        opens = b"".join(open_frame(sid, hold) for sid in range(1, 200, 2))
        conn.sendall(mux_settings(window=1 << 20) + opens)

        got = verdicts(conn, 100)

        assert got == {(200, ""): PER_PEER, (503, "overloaded"): 100 - PER_PEER}
        serves(echo_import)  # a has a budget of its own
        assert metric(pair.target, "clusterlink_peer_tunnels", peer="c") == PER_PEER

    assert hits(pair.target, "max_connections_per_peer") - before_hits == 100 - PER_PEER
    assert 1 <= count(pair.target, "(--max-connections-per-peer)") - before_lines <= 5
    wait_until(
        lambda: metric(pair.target, "clusterlink_peer_tunnels", peer="c") == 0,
        what="c's tunnels are all given back once its connection is gone",
    )


def rss_bytes(gateway: Gateway) -> int:
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    (line,) = (line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def settle(firehose: Firehose, connections: int) -> int:
    """Wait until ``connections`` reached the service and it could send nothing more for a
    second (the gateway stopped reading); what it sent in all."""

    def stalled() -> bool:
        sent = firehose.sent
        time.sleep(1.0)  # a stretch in which nothing more may be sent (inside a poll)
        return firehose.connections >= connections and firehose.sent == sent

    wait_until(stalled, what="the service can send no more", timeout_s=30)
    return firehose.sent


@pytest.fixture
def firehose(link: Link) -> Iterator[Firehose]:
    service = Firehose(limit_bytes=128 * MIB)
    link.target.apply(
        export("firehose", link.namespace, service.port),
        access_policy("allow-all", link.namespace, "allow"),
    )
    yield service
    service.close()


def test_a_peer_that_opens_streams_and_never_reads_cannot_make_the_gateway_buffer(
    pair: Pair, link: Link, echo_import: tuple[str, int], c_dir: Path, firehose: Firehose
) -> None:
    """c grants the largest window there is (2 GiB a stream) and reads nothing: what waits
    for it is bounded by the connection's buffer, also for streams opened once it is full."""
    target = f"{link.namespace}/firehose"
    rss_before = rss_bytes(pair.target)
    with tls(pair.target.listen, c_dir, MUX_ALPN) as conn:
        conn.sendall(mux_settings(window=2**31 - 1) + open_frame(1, target))
        settle(firehose, 1)
        conn.sendall(b"".join(open_frame(sid, target) for sid in (3, 5, 7)))
        sent = settle(firehose, 4)
        growth = rss_bytes(pair.target) - rss_before
        serves(echo_import)  # during

    assert sent < 4 * 128 * MIB  # every service was stopped before its end
    assert growth < 64 * MIB, f"b grew by {growth / MIB:.0f} MiB; the services sent {sent}"
    serves(echo_import)


def test_a_peer_that_opens_streams_but_never_reads_the_answers_is_cut_off(
    pair: Pair, link: Link, echo_import: tuple[str, int], c_dir: Path, firehose: Firehose
) -> None:
    """Every OPEN is answered (here: 400, a malformed target). Once b's writes to c are
    stuck (c reads nothing of a stream it asked for), the answers to more OPENs could only
    pile up in b's memory: past a bound (10,000) c is disconnected."""
    with tls(pair.target.listen, c_dir, MUX_ALPN) as conn:
        conn.sendall(mux_settings(window=2**31 - 1) + open_frame(1, f"{link.namespace}/firehose"))
        settle(firehose, 1)
        opens = b"".join(open_frame(sid, "not a target") for sid in range(3, 24_000, 2))
        with contextlib.suppress(OSError):  # cut off while sending: what the test is after
            conn.sendall(opens)
        wait_until(  # 12,000 OPENs to read and answer: longer than a log line's usual wait
            lambda: "new streams while reading none of our answers" in pair.target.log(),
            what="b cuts c off",
            timeout_s=30,
        )
        assert ending(conn).end in CLOSED  # what was sent before, then the end

    serves(echo_import)
