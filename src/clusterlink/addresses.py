"""``host:port`` text and ``(host, port)`` values, both ways.

Used by every layer that names an address (the command line, the admin client, logs, the
gateway's listeners and dialers), so it lives outside ``transport``: the client and the CLI
may import it without reaching into the I/O layers. Pure; IPv6 hosts are written in
brackets (``[::1]:8443``) and read with or without them.
"""

from __future__ import annotations

__all__ = ["Address", "format_address", "format_peername", "parse_address"]

Address = tuple[str, int]


def parse_address(text: str, *, what: str = "address") -> Address:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError with a clear message."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{what} {text!r} is not HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{what} {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} {text!r}: port must be 0..65535")
    return host, port


def format_address(addr: Address | tuple[str, int, int, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peername(peername: object) -> str:
    """A socket's ``peername`` extra info as ``host:port``; ``?`` where there is none."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        return format_address(peername)
    return "?"
