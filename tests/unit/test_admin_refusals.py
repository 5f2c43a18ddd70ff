"""Refusal logging: one line per refusal, warnings rate-limited, on an injected clock."""

from __future__ import annotations

import logging
import ssl

import pytest

from clusterlink.controlplane.refusals import RefusalLog, describe_handshake_failure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(record.levelname, record.getMessage()) for record in caplog.records]


def refusals(clock: Clock, **limits: int) -> RefusalLog:
    return RefusalLog(logging.getLogger("test.refusals"), clock=clock, **limits)


def test_every_refusal_is_a_line_and_only_the_first_a_warning(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    log = refusals(clock)
    caplog.set_level(logging.DEBUG)

    for attempt in range(3):
        log.refused("10.0.0.1", "no-certificate", f"refused attempt {attempt}")
        clock.now += 1

    assert lines(caplog) == [
        ("WARNING", "refused attempt 0"),
        ("DEBUG", "refused attempt 1 (repeat, not warned again)"),
        ("DEBUG", "refused attempt 2 (repeat, not warned again)"),
    ]


def test_after_the_window_it_warns_again_saying_how_many_it_held_back(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    log = refusals(clock)
    caplog.set_level(logging.WARNING)
    for _ in range(4):
        log.refused("10.0.0.1", "untrusted", "refused")

    clock.now += 60
    log.refused("10.0.0.1", "untrusted", "refused again")

    assert lines(caplog) == [
        ("WARNING", "refused"),
        ("WARNING", "refused again (and 3 more like it before, logged at debug)"),
    ]


def test_other_hosts_and_other_reasons_warn_on_their_own(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    log = refusals(clock)
    caplog.set_level(logging.WARNING)

    log.refused("10.0.0.1", "untrusted", "a")
    log.refused("10.0.0.2", "untrusted", "b")
    log.refused("10.0.0.1", "no-certificate", "c")

    assert [message for _, message in lines(caplog)] == ["a", "b", "c"]


def test_many_hosts_cannot_flood_the_warnings(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    log = refusals(clock, max_warnings=3)
    caplog.set_level(logging.DEBUG)

    for host in range(10):
        log.refused(f"10.0.0.{host}", "untrusted", f"host {host}")

    levels = [level for level, _ in lines(caplog)]
    assert levels == ["WARNING"] * 3 + ["DEBUG"] * 7
    clock.now += 60
    log.refused("10.0.0.9", "untrusted", "next window")
    assert lines(caplog)[-1] == ("WARNING", "next window")


def test_the_table_of_hosts_stays_bounded(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    log = refusals(clock, max_keys=2, max_warnings=100)
    caplog.set_level(logging.WARNING)

    for host in ("a", "b", "c", "a"):  # "a" was evicted by "c", so it warns again
        log.refused(host, "untrusted", host)

    assert [message for _, message in lines(caplog)] == ["a", "b", "c", "a"]


def ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] ...")
    error.reason = reason
    return error


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.reason = "CERTIFICATE_VERIFY_FAILED"
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "no-certificate", "no certificate"),
        (verify_error("unable to get local issuer certificate"), "untrusted", "another fabric"),
        (ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "distrusted", "does not trust this gateway"),
        (ssl_error("HTTP_REQUEST"), "not-tls", "does not speak TLS 1.3 (http request)"),
        (ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "alert", "ended the handshake"),
        (ssl_error("NO_SHARED_CIPHER"), "tls", "no shared cipher"),
        (TimeoutError("TLS handshake did not finish within 5s"), "timeout", "within 5s"),
    ],
)
def test_a_failed_handshake_is_described_for_an_operator(
    exc: BaseException, kind: str, words: str
) -> None:
    described = describe_handshake_failure(exc, peer="a")

    assert described is not None
    assert described[0] == kind
    assert words in described[1]


def test_a_connection_closed_mid_handshake_is_no_refusal() -> None:
    closed = ConnectionResetError("connection closed during TLS handshake")

    assert describe_handshake_failure(closed, peer="a") is None
