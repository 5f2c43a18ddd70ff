"""A running gateway's TLS contexts, kept in step with its files without a restart.

Operators replace ``cert.pem``/``key.pem`` (a new certificate, same fabric) and edit ``ca.pem``
(a CA rotation) while gateways run. ``CredentialReloader`` holds what the gateway built from
the last good reading of those files (``current``: its TLS contexts, built by the caller's
``build``) and replaces it, whole, when ``check()`` finds the files changed and good:

- *Changed* means the content changed (a digest of the three files, see
  ``gateway_files_digest``); the caller polls ``check()`` every few seconds and calls
  ``check(force=True)`` on SIGHUP. inotify would be quicker but is not portable, and a poll of
  three small files costs microseconds.
- *Good* means exactly what a start-up demands (``read_gateway_credentials``: parseable, key
  matching the certificate, issued by a CA of the bundle, inside its validity period) and the
  same peer and fabric as the running gateway: its name is part of its state, so a new identity
  needs a restart. The contexts are then built from the files, and the files are read again:
  if they changed meanwhile, the result is thrown away (it may mix two versions) and the next
  check tries again.
- Anything else is *rejected*: one log line with the reason, and ``current`` stays as it was.
  A half-written file or a certificate whose key is not there yet is therefore harmless; the
  same rejected files are not reported again until they change.

Validity periods move without any file changing: the contexts trust only the CAs valid at the
time they were built (``bundle``), and the gateway's own certificate expires some day. So a
check also rebuilds when the first such moment has passed, which drops an expired CA from the
trusted set, and says loudly when the gateway's own certificate has expired.

Swapping ``current`` is one assignment, so every *new* connection gets either the old or the
new contexts, never a mix; a connection already open keeps the context it was made with.

Nothing here does network I/O, sleeps or knows about asyncio; the caller owns the timing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

from clusterlink.certs.bundle import ca_id
from clusterlink.certs.peerdir import (
    CA_FILE,
    GatewayCredentials,
    PeerDir,
    gateway_files_digest,
    load_peer_dir,
    read_gateway_credentials,
)
from clusterlink.certs.validity import format_utc, serial_hex
from clusterlink.errors import CertificateError

__all__ = ["CredentialReloader"]

log = logging.getLogger("clusterlink.certs")

T = TypeVar("T")


class CredentialReloader(Generic[T]):
    """``current``: what ``build`` made of the peer directory's latest good credentials."""

    def __init__(
        self,
        path: Path,
        build: Callable[[PeerDir], T],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        require_admin: bool = True,
    ) -> None:
        """Load and build once; CertificateError (start-up fails) if the directory is unusable.

        ``require_admin``: the admin certificate and key must be there too (standalone: the
        CLI on this host uses them). In Kubernetes mode the peer directory is a Secret that
        holds the gateway's own files only, and the admin key stays out of the cluster.
        """
        self._path = path
        self._build = build
        self._clock = clock
        self.peer_dir = (  # the whole gate, once
            load_peer_dir(path)
            if require_admin
            else read_gateway_credentials(path, clock()).peer_dir
        )
        now = clock()
        self.credentials, self.current = self._load(now)
        self._due_at = _next_moment(self.credentials, now)
        self._rejected: bytes | None = None  # digest of files already reported as unusable
        log.info("TLS credentials of peer %s: %s", self.peer_dir.name, _summary(self.credentials))

    def check(self, *, force: bool = False) -> bool:
        """Rebuild if the files changed or a validity period began or ended (always if
        ``force``); True if ``current`` was replaced."""
        now = self._clock()
        digest = gateway_files_digest(self._path)
        is_changed = digest != self.credentials.digest
        if not force and (digest == self._rejected or not (is_changed or now > self._due_at)):
            return False
        old = self.credentials
        try:
            self.credentials, self.current = self._load(now)
        except CertificateError as exc:
            self._rejected = digest
            # Files that were good and went bad by the clock alone are the worse news.
            level = logging.WARNING if is_changed else logging.ERROR
            log.log(
                level,
                "kept the TLS credentials in use (certificate serial %s) and rejected %s: %s",
                serial_hex(old.cert.serial_number),
                "the changed files" if is_changed else "the current files",
                exc,
            )
            return False
        self._rejected = None
        self._due_at = _next_moment(self.credentials, now)
        log.info(
            "reloaded the TLS credentials of peer %s for new connections (open ones keep "
            "theirs): %s",
            self.peer_dir.name,
            _summary(self.credentials),
        )
        return True

    def _load(self, now: datetime) -> tuple[GatewayCredentials, T]:
        credentials = read_gateway_credentials(self._path, now)
        found, running = credentials.peer_dir, self.peer_dir
        if (found.name, found.fabric) != (running.name, running.fabric):
            raise CertificateError(
                f"{credentials.peer_dir.cert_file} names peer {found.name!r} of fabric "
                f"{found.fabric!r}, but this gateway runs as peer {running.name!r} of fabric "
                f"{running.fabric!r}; a gateway changes its identity only with a restart"
            )
        built = self._build(credentials.peer_dir)
        if gateway_files_digest(self._path) != credentials.digest:
            raise CertificateError(
                f"the files in {self._path} changed while they were being loaded; "
                "the next check reads them again"
            )
        for problem in credentials.bundle.invalid_at(now):
            log.warning(
                "%s: %s; it is not trusted: take it out with `clusterlink rotate ca-bundle`",
                self._path / CA_FILE,
                problem,
            )
        return credentials, built


def _next_moment(credentials: GatewayCredentials, now: datetime) -> datetime:
    """When the gateway's certificate expires or the set of trusted CAs changes, first."""
    moments = [credentials.cert.not_valid_after_utc]
    next_change = credentials.bundle.next_change(now)
    if next_change is not None:
        moments.append(next_change)
    return min(moments)


def _summary(credentials: GatewayCredentials) -> str:
    cert, bundle = credentials.cert, credentials.bundle
    trusted = ", ".join(
        f"{ca_id(ca)} (until {format_utc(ca.not_valid_after_utc)})" for ca in bundle.cas
    )
    return (
        f"certificate serial {serial_hex(cert.serial_number)} valid until "
        f"{format_utc(cert.not_valid_after_utc)}, issued by CA {ca_id(credentials.issuer)}; "
        f"ca.pem holds {len(bundle.cas)} CA(s): {trusted}"
    )
