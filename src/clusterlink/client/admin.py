"""A synchronous client of one gateway's admin API (docs/admin-api.md).

The CLI, the demo and users' scripts all talk to a gateway through this class, so every way a
call can fail is turned into our error hierarchy *here*, once: a transport failure becomes
``PeerUnreachable`` (or ``CertificateError`` when the TLS handshake is refused), an error answer
becomes ``NotFoundError``, ``ValidationError`` (with the server's ``field``), ``ConflictError``
or ``AdminAPIError``. Nothing above this module sees an ``ssl`` or ``http.client`` exception.

Why synchronous: a CLI run makes one or two calls, and a blocking client keeps callers free of
an event loop. Every call is bounded: ``connect_timeout_s`` for the TCP and TLS set-up,
``timeout_s`` for each read and write.

The gateway's certificate names the *peer*, not the address we dial (usually 127.0.0.1), so
every request sets the TLS server name (SNI and the name checked) to the peer's name. Proxy
settings from the environment are ignored: the admin API is always dialled directly.

The client is built on the standard library (``https``) and, for a sound peer directory, loads
its credentials without ``cryptography`` (``credentials``): a ``clusterlink get`` then costs
little more than the interpreter's start.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from clusterlink import addresses
from clusterlink.client.credentials import (
    diagnose,
    gateway_info,
    load_admin_credentials,
    not_running,
)
from clusterlink.client.https import AdminConnection, Answer
from clusterlink.errors import (
    AdminAPIError,
    CertificateError,
    ClusterLinkError,
    ConflictError,
    LinkRefused,
    NotFoundError,
    PeerUnreachable,
    ValidationError,
)
from clusterlink.kind_names import kind_names

__all__ = ["AdminClient", "Changes", "Document", "format_address", "parse_address"]

Document = dict[str, Any]


class Changes(list[Document]):
    """The results of an apply or delete, one per resource.

    ``tunnels_closed`` is set when the call asked to close tunnels the change revoked;
    ``dry_run`` when nothing was changed and the results say what would have been.
    """

    tunnels_closed: int | None = None
    dry_run: bool = False


def _changes(answer: Document) -> Changes:
    changes = Changes(_list_of(answer, "results"))
    closed = answer.get("tunnelsClosed")
    changes.tunnels_closed = closed if isinstance(closed, int) else None
    changes.dry_run = answer.get("dryRun") is True
    return changes


def _write_params(close_tunnels: bool, dry_run: bool) -> dict[str, str]:
    flags = {"closeTunnels": close_tunnels, "dryRun": dry_run}
    return {name: "true" for name, given in flags.items() if given}


_E = TypeVar("_E", bound=BaseException)

# A gateway listening on a wildcard address is reached on the loopback of the same family.
_WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises ``ValidationError`` otherwise."""
    try:
        return addresses.parse_address(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8444)") from None


def format_address(host: str, port: int) -> str:
    """The inverse of ``parse_address``: brackets IPv6 hosts."""
    return addresses.format_address((host, port))


class AdminClient:
    """Calls one gateway's admin API with this peer's admin certificate.

    Use :meth:`from_peer_dir` unless you already hold an SSL context; close it (or use it as a
    context manager) to release its connection. It makes one call at a time: callers that share
    one between threads take turns (as the dashboard does).
    """

    def __init__(
        self,
        *,
        peer: str,
        address: str,
        ssl_context: ssl.SSLContext,
        hint: str = "",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        diagnose: Callable[[], None] | None = None,
    ) -> None:
        host, port = parse_address(address)
        host = _WILDCARD_TO_LOOPBACK.get(host, host)
        self.peer = peer
        self.address = format_address(host, port)
        self.timeout_s = timeout_s
        self._hint = hint
        # Raises the error that explains a refused handshake, if this side's files explain it.
        self._diagnose = diagnose
        self._connection = AdminConnection(
            host,
            port,
            server_name=peer,
            ssl_context=ssl_context,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    @classmethod
    def from_peer_dir(cls, peer_dir: Path, *, admin: str | None = None) -> AdminClient:
        """A client for the gateway of the peer in ``peer_dir``.

        The address is ``admin`` if given, else the ``admin`` address the running gateway wrote
        to ``<peer_dir>/gateway.json``.
        """
        info = gateway_info(peer_dir)
        found = load_admin_credentials(peer_dir, info)
        start = f"`clusterlink gateway run --peer-dir {found.path}`"
        if admin is None:
            if info is None:
                raise not_running(found.peer, found.path, start)
            admin = info.get("admin")
            if not isinstance(admin, str):
                raise PeerUnreachable(
                    f"{found.path / 'gateway.json'} names no admin address; restart the gateway"
                )
            hint = f"is {start} running?"
        else:
            hint = f"is {start} running, and does --admin {admin} match its --admin-listen?"
        return cls(
            peer=found.peer,
            address=admin,
            ssl_context=found.ssl_context,
            hint=hint,
            diagnose=lambda: diagnose(found.path),
        )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def status(self) -> Document:
        """This gateway, its peers, exports and imports (``GET /v1/status``)."""
        return self._call("GET", "/v1/status")

    def apply(
        self, documents: list[Document], *, close_tunnels: bool = False, dry_run: bool = False
    ) -> Changes:
        """Create or update every document, all or nothing; one result per document.

        ``close_tunnels``: also reset open tunnels that the new state no longer allows
        (otherwise a change applies to new connections only). ``dry_run``: check everything
        and say what would change, changing nothing.
        """
        params = _write_params(close_tunnels, dry_run)
        answer = self._call("POST", "/v1/apply", body={"documents": documents}, params=params)
        return _changes(answer)

    def delete_documents(
        self, documents: list[Document], *, close_tunnels: bool = False, dry_run: bool = False
    ) -> Changes:
        """Delete the resources the documents name, all or nothing (404 if any is missing)."""
        params = _write_params(close_tunnels, dry_run)
        answer = self._call("POST", "/v1/delete", body={"documents": documents}, params=params)
        return _changes(answer)

    def get(self, kind: str, name: str, namespace: str = "default") -> Document:
        """The stored document, with ``status``; ``NotFoundError`` if there is none."""
        path = f"/v1/resources/{_path_of(kind)}/{quote(name, safe='')}"
        return self._call("GET", path, params={"namespace": namespace})

    def delete(
        self,
        kind: str,
        name: str,
        namespace: str = "default",
        *,
        close_tunnels: bool = False,
        dry_run: bool = False,
    ) -> Changes:
        """Delete one resource; ``NotFoundError`` if there is none."""
        path = f"/v1/resources/{_path_of(kind)}/{quote(name, safe='')}"
        params = {"namespace": namespace, **_write_params(close_tunnels, dry_run)}
        return _changes(self._call("DELETE", path, params=params))

    def invite(self, *, name: str, ttl_s: int, uses: int, gateways: list[Document]) -> Document:
        """A new invitation for peer ``name`` (``POST /v1/invitations``): its ``token`` (which
        holds a secret: hand it over privately), ``id``, ``expiresAt``, ``uses``, ``gateways``.
        """
        body: Document = {"peer": name, "ttlS": ttl_s, "uses": uses}
        if gateways:
            body["gateways"] = gateways
        return self._call("POST", "/v1/invitations", body=body)

    def link(self, *, token: str, gateways: list[Document]) -> Document:
        """Link this gateway with the peer that issued ``token`` (``POST /v1/link``);
        ``LinkRefused`` (with its ``reason``) if that did not happen."""
        body: Document = {"token": token}
        if gateways:
            body["gateways"] = gateways
        return self._call("POST", "/v1/link", body=body, is_link=True)

    def flows(self, *, after: int = 0, limit: int | None = None) -> Document:
        """Recent tunnel records after id ``after`` (``GET /v1/flows``): ``items`` oldest
        first, ``open`` (how many tunnels are open) and ``last`` (the id to ask after next)."""
        params = {"after": str(after)}
        if limit is not None:
            params["limit"] = str(limit)
        return self._call("GET", "/v1/flows", params=params)

    def explain(self, body: Document) -> Document:
        """Which policy would decide a connection, tier by tier (``POST /v1/explain``):
        ``body`` has ``import`` (and ``clientIp``...) or ``export`` and ``peer``."""
        return self._call("POST", "/v1/explain", body=body)

    # Defined last: inside the class body, later annotations would see this method as `list`.
    def list(self, kind: str, namespace: str | None = None) -> list[Document]:
        """Every resource of ``kind`` in ``namespace``, or in all namespaces if None."""
        params = {} if namespace is None else {"namespace": namespace}
        answer = self._call("GET", f"/v1/resources/{_path_of(kind)}", params=params)
        return _list_of(answer, "items")

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Document | None = None,
        params: dict[str, str] | None = None,
        is_link: bool = False,
    ) -> Document:
        where = f"the admin API of peer {self.peer} at {self.address}"
        target = f"{path}?{urlencode(params)}" if params else path
        data = None if body is None else json.dumps(body).encode()
        try:
            self._connection.open()
        except TimeoutError as exc:
            raise self._no_answer(where) from exc
        except ssl.SSLError as exc:
            raise self._handshake_failed(where, exc) from exc
        except OSError as exc:
            raise PeerUnreachable(f"cannot reach {where}: {_why(exc)}; {self._hint}") from exc
        try:
            answer = self._connection.call(method, target, data)
        except TimeoutError as exc:
            raise self._no_answer(where) from exc
        except ssl.SSLError as exc:
            # With TLS 1.3 a refused client certificate shows up on the first read, not in
            # the handshake.
            raise self._handshake_failed(where, exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise PeerUnreachable(f"lost the connection to {where}: {_why(exc)}") from exc
        document = _json_of(answer)
        if 200 <= answer.status < 300 and isinstance(document, dict):
            return document
        if answer.status == 403 and self._diagnose is not None:
            self._diagnose()  # e.g. an admin certificate of another peer
        raise _error_of(answer.status, document, where, is_link=is_link)

    def _no_answer(self, where: str) -> PeerUnreachable:
        return PeerUnreachable(f"{where} did not answer within {self.timeout_s:g} s; {self._hint}")

    def _handshake_failed(self, where: str, exc: ssl.SSLError) -> CertificateError:
        if self._diagnose is not None:
            self._diagnose()  # this side's files may say what is wrong, in their own words
        return CertificateError(
            f"TLS handshake with {where} failed ({_why(exc)}); check that this "
            f"address is the gateway of peer {self.peer} and that the peer directory "
            "belongs to its fabric"
        )


def _path_of(kind: str) -> str:
    """The URL segment of a kind typed any accepted way (``import``, ``Imports``, ...)."""
    return kind_names(kind).plural


def _list_of(answer: Document, key: str) -> list[Document]:
    items = answer.get(key)
    if not isinstance(items, list):
        raise AdminAPIError(f"the admin API answered without {key!r}: {answer!r:.200}", status=200)
    return items


def _json_of(answer: Answer) -> Any:
    try:
        return json.loads(answer.body)
    except ValueError:
        return None


def _error_of(status: int, answer: Any, where: str, *, is_link: bool) -> ClusterLinkError:
    """The error for an answer that is not a success (or not a JSON object); a refused link
    is ``LinkRefused`` with the reason the gateway gave."""
    body = answer if isinstance(answer, dict) else {}
    message = str(body.get("message") or f"{where} answered {status} without a reason")
    field = body.get("field") if isinstance(body.get("field"), str) else None
    if is_link and body.get("reason") in LinkRefused.REASONS:
        return LinkRefused(message, reason=str(body["reason"]), status=status)
    if status == 404:
        return NotFoundError(message)
    if status == 422:
        # Keep the server's wording (it usually names the document and the field already).
        error = ValidationError(message if not field or field in message else f"{field}: {message}")
        error.field = field
        return error
    if status == 409:
        return ConflictError(message)
    if status == 403:
        message += "; use the admin certificate of this peer's directory (admin/cert.pem)"
    reason = body.get("reason", "unexpected answer" if 200 <= status < 300 else "error")
    return AdminAPIError(f"{message} ({status} {reason})", status=status, field=field)


def _cause_of_type(exc: BaseException, kind: type[_E]) -> _E | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _why(exc: BaseException) -> str:
    """A short reason for a network error, from the innermost cause that has one."""
    if _cause_of_type(exc, ConnectionRefusedError) is not None:
        return "connection refused"
    if (tls_error := _cause_of_type(exc, ssl.SSLError)) is not None:
        if isinstance(tls_error, ssl.SSLCertVerificationError) and tls_error.verify_message:
            return f"certificate verify failed: {tls_error.verify_message}"
        return str(tls_error.reason or tls_error).lower().replace("_", " ")
    if (os_error := _cause_of_type(exc, OSError)) is not None and os_error.strerror:
        return os_error.strerror.lower()
    return str(exc) or type(exc).__name__
