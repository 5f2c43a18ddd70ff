"""The last check of a peer handshake, and a refusal explained in words an operator can use.

OpenSSL rejects a certificate outside its validity period with "certificate has expired" and
nothing else: not whose, not since when. With a fabric of many peers and a CA being rotated,
that is not enough to act on. So the peer contexts (``tls.py``) tell OpenSSL to skip the time
checks (``X509_V_FLAG_NO_CHECK_TIME``) and let every other check stand (chain to a trusted CA,
signatures, key usages, host name), and the handshake object made from those contexts checks
the time itself, right after OpenSSL accepted the chain, on the certificate it verified::

    certificate of peer b (serial 4F1A...) expired at 2026-05-01 12:00:00 UTC
    (valid from 2024-05-01 11:55:00 UTC; now 2026-05-09 08:00:01 UTC)

The refusal is the same ``ssl.SSLCertVerificationError`` that OpenSSL would raise (with
``verify_code`` 9 or 10 and that sentence as ``verify_message``), raised from
``do_handshake``, so callers handle it as they always did and their messages carry the
sentence. The CA certificates are time-checked where they are loaded: the contexts trust only
the CAs of the bundle that are valid now (``bundle``), and a running gateway rebuilds its
contexts when that changes (``reloading``).

The dialing side learns why from the exception. The accepting side has nobody to tell, so a
refused handshake is logged here, once per distinct reason and certificate per minute (a
peer with an expired certificate retries every second). An accepted one is logged at debug
level with the serial it presented, which is how an operator sees a rotation take effect.

Invariant: ``do_handshake`` is the only way into a connection, so nothing can skip the check;
the check reads only the ``getpeercert()`` dict (no re-parsing, a few microseconds per
handshake) and nothing runs per record.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

from clusterlink.certs.validity import (
    describe_peercert,
    format_utc,
    validity_problem,
)
from clusterlink.log_throttle import LogThrottle

__all__ = ["NO_CHECK_TIME", "CheckedSSLObject", "CheckedSSLSocket"]

log = logging.getLogger("clusterlink.certs")

NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME; Python's ssl names no constant for it
_NOT_YET_VALID = 9  # X509_V_ERR_CERT_NOT_YET_VALID
_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
_UNKNOWN_ISSUER = {2, 20}  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)


class _OutsideValidity(ssl.SSLCertVerificationError):
    """What OpenSSL would raise for a certificate outside its validity period, in our words;
    ``holder`` says whose certificate it is (the message also has the time now)."""

    def __init__(self, holder: str, code: int, problem: str) -> None:
        super().__init__(
            1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {problem}"
        )
        self.library, self.reason = "SSL", "CERTIFICATE_VERIFY_FAILED"
        self.verify_code, self.verify_message = code, problem
        self.holder = holder


def _check_presented(connection: ssl.SSLObject | ssl.SSLSocket) -> None:
    """Refuse the peer's certificate if it is outside its validity period now.

    The accepted case is the hot one (every handshake): two cached string lookups and a
    comparison; sentences are only made for a refusal or a debug line.
    """
    peercert = connection.getpeercert()
    if not peercert:  # CERT_REQUIRED: OpenSSL has already refused a missing certificate
        return
    not_before_s = _epoch_s(peercert["notBefore"])
    not_after_s = _epoch_s(peercert["notAfter"])
    now_s = time.time()
    if not_before_s <= now_s <= not_after_s:
        if connection.server_side and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "peer listener accepted the %s, valid until %s",
                describe_peercert(peercert),
                format_utc(datetime.fromtimestamp(not_after_s, UTC)),
            )
        return
    holder = describe_peercert(peercert)
    not_before, not_after, now = (
        datetime.fromtimestamp(seconds, UTC) for seconds in (not_before_s, not_after_s, now_s)
    )
    problem = validity_problem(holder, not_before, not_after, now)
    code = _NOT_YET_VALID if now_s < not_before_s else _EXPIRED
    raise _OutsideValidity(holder, code, problem or "outside its validity period")


@functools.lru_cache(maxsize=1024)
def _epoch_s(cert_time: str) -> int:
    """``getpeercert()``'s time text as seconds since the epoch (peers present the same
    certificate again and again, so parsing is cached)."""
    return ssl.cert_time_to_seconds(cert_time)


def _reason_of(error: ssl.SSLCertVerificationError) -> str:
    message = error.verify_message or str(error)
    if error.verify_code in _UNKNOWN_ISSUER:
        return (
            f"the caller's certificate does not verify ({message}): it was not issued by a CA "
            "in this gateway's ca.pem (another fabric, or a CA removed from the bundle)"
        )
    if isinstance(error, _OutsideValidity):
        return message
    return f"the caller's certificate does not verify ({message})"


# One line per kind of refusal and minute; one certificate's refusals differ only in the
# time now, so they count as one kind (its holder).
_refusals = LogThrottle(log, burst=1, window_s=60.0, max_sources=1024)


def _handshake_checked(
    connection: ssl.SSLObject | ssl.SSLSocket, handshake: Callable[[], None]
) -> None:
    try:
        handshake()
        _check_presented(connection)
    except ssl.SSLCertVerificationError as exc:
        if connection.server_side:
            reason = _reason_of(exc)
            kind = exc.holder if isinstance(exc, _OutsideValidity) else reason
            _refusals.log(
                logging.WARNING, kind, "peer listener refused a TLS handshake: %s", reason
            )
        raise


class CheckedSSLObject(ssl.SSLObject):
    """``SSLContext.sslobject_class`` of the peer contexts (``wrap_bio``, our TLS layer)."""

    def do_handshake(self) -> None:
        _handshake_checked(self, super().do_handshake)


class CheckedSSLSocket(ssl.SSLSocket):
    """``SSLContext.sslsocket_class`` of the peer contexts, so ``wrap_socket`` checks too."""

    def do_handshake(self, block: bool = False) -> None:
        _handshake_checked(self, functools.partial(super().do_handshake, block))
