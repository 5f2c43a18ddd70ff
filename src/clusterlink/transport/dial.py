"""Dialing: a TCP connection with a deadline, optionally with a TLS layer on top.

Every wait here has an explicit timeout, and every failure leaves as one of our errors with a
message that names the target: ``PeerUnreachable`` for connect/handshake/timeouts,
``CertificateError`` when the other side's certificate does not verify (wrong fabric, wrong
name, expired) — the two need different fixes, so they are told apart here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator

from clusterlink.addresses import Address, format_address
from clusterlink.errors import CertificateError, PeerUnreachable
from clusterlink.protocol import ALPN_PROTOCOL
from clusterlink.transport.tls import TLSLayer
from clusterlink.transport.tls_socket import SocketTLSTransport, handshake

__all__ = ["dial_tcp", "dial_tls", "dial_tls_socket", "expect_peer_listener"]


@contextlib.asynccontextmanager
async def _connecting(addr: Address, *, timeout_s: float, what: str) -> AsyncIterator[None]:
    """A TCP connect within ``timeout_s``; its failures as ``PeerUnreachable`` naming ``what``."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise PeerUnreachable(
            f"{what} at {format_address(addr)} did not accept a connection within {timeout_s:g}s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PeerUnreachable(f"{what} at {format_address(addr)}: {reason.lower()}") from exc


async def dial_tcp(
    addr: Address, protocol: asyncio.BaseProtocol, *, connect_timeout_s: float, what: str
) -> asyncio.Transport:
    """Connect ``protocol`` to ``addr``; ``what`` names the target in errors."""
    loop = asyncio.get_running_loop()
    async with _connecting(addr, timeout_s=connect_timeout_s, what=what):
        transport, _ = await loop.create_connection(lambda: protocol, addr[0], addr[1])
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return transport


async def dial_tls(
    addr: Address,
    app: asyncio.Protocol,
    *,
    context: ssl.SSLContext,
    server_name: str,
    connect_timeout_s: float,
    handshake_timeout_s: float,
    what: str,
) -> TLSLayer:
    """Connect and complete a TLS handshake that verifies the server is ``server_name``."""
    layer = TLSLayer(
        context,
        app,
        server_side=False,
        server_hostname=server_name,
        handshake_timeout_s=handshake_timeout_s,
    )
    await dial_tcp(addr, layer, connect_timeout_s=connect_timeout_s, what=what)
    try:
        await layer.handshake_done
    except asyncio.CancelledError:
        # The caller gave up (an outer deadline, a pool closing): the handshake would still
        # finish and leave an open connection that nobody owns.
        layer.abort()
        raise
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        raise _handshake_error(exc, addr, server_name, what) from exc
    return layer


async def dial_tls_socket(
    addr: Address,
    app: asyncio.Protocol,
    *,
    context: ssl.SSLContext,
    server_name: str,
    connect_timeout_s: float,
    handshake_timeout_s: float,
    what: str,
) -> SocketTLSTransport:
    """``dial_tls`` with OpenSSL on the socket itself (``transport.tls_socket``): for
    connections that never half-close. ``app`` gets ``connection_made`` before this returns."""
    loop = asyncio.get_running_loop()
    async with _connecting(addr, timeout_s=connect_timeout_s, what=what):
        sock = await _connect(loop, addr)
    try:
        tls = await handshake(
            sock,
            context,
            server_side=False,
            server_hostname=server_name,
            timeout_s=handshake_timeout_s,
        )
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        raise _handshake_error(exc, addr, server_name, what) from exc
    transport = SocketTLSTransport(tls, app)
    transport.start()
    return transport


async def _connect(loop: asyncio.AbstractEventLoop, addr: Address) -> socket.socket:
    """A connected non-blocking socket to ``addr`` (its first address that answers)."""
    infos = await loop.getaddrinfo(addr[0], addr[1], type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {addr[0]}")
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


def _handshake_error(
    exc: BaseException, addr: Address, server_name: str, what: str
) -> CertificateError | PeerUnreachable:
    """Our error for a failed handshake: a certificate that does not verify is told apart."""
    where = f"{what} at {format_address(addr)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(
            f"{where} presented a certificate that does not verify: {exc.verify_message}; "
            f"is it a gateway of this fabric named {server_name!r}?"
        )
    if isinstance(exc, ssl.SSLError):
        return PeerUnreachable(f"TLS handshake with {where} failed: {exc.reason or exc}")
    return PeerUnreachable(f"TLS handshake with {where} failed: {exc}")


def expect_peer_listener(layer: TLSLayer, where: str) -> None:
    """Check that a connection made offering the basic mode reached a peer listener.

    A peer's address must be its peer listener (``--listen``), and the usual mistake is the
    other gateway's ``--admin-listen`` port, which says nothing helpful by itself (it answers
    a heartbeat or a CONNECT with a 403 about admin certificates). Told apart at the
    handshake: a peer listener always selects the basic protocol (``clusterlink/1``) when it
    is offered, while the admin API selects none. Nothing else can get this far: the
    certificate has already verified as the peer's, issued by the fabric, and a gateway's
    only other TLS listener is the admin API. Checked before any request, so the other
    gateway does not log an admin refusal for each attempt. The connection is aborted.
    """
    if layer.get_extra_info("alpn_protocol") != ALPN_PROTOCOL:
        layer.abort()
        raise PeerUnreachable(
            f"{where} is an admin API port, not a peer listener: use the port of the "
            "peer's --listen"
        )
