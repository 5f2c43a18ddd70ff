"""Every admin route refuses every wrong identity (DESIGN §3, docs/admin-api.md), on a real gateway.

The table is every route of the API (and a path that is no route: the check comes first)
crossed with every certificate that must not administer gateway ``a``:

- none at all, and certificates of another fabric (named like ours, only its CA differs):
  the TLS handshake fails, before any HTTP;
- a's and b's gateway certificates and b's admin certificate: valid certificates of the
  fabric, so the answer is a ``403`` whose message names what was presented and which one to
  use.

Each row is paired with the same request made with a's admin certificate (the control), so a
row cannot pass because the request itself was wrong. Every refusal must also leave exactly
one line in the gateway's log; the gateway runs at debug level, so repeats that the log
demotes to debug (see ``controlplane.refusals``) are counted too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.admin_http import Answer, call
from tests.integration.conftest import StartGateway
from tests.integration.gateways import Fabric, Gateway
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

EMPTY: dict[str, list[object]] = {"documents": []}

# (method, path, body, status with the right certificate)
ROUTES = [
    ("GET", "/v1/status", None, 200),
    ("POST", "/v1/apply", EMPTY, 200),
    ("POST", "/v1/delete", EMPTY, 200),
    ("GET", "/v1/resources/exports?namespace=default", None, 200),
    ("GET", "/v1/resources/exports/nosuch", None, 404),
    ("DELETE", "/v1/resources/exports/nosuch", None, 404),
    ("GET", "/v1/openapi.json", None, 200),
    ("POST", "/v1/invitations", {"peer": "nobody"}, 200),
    ("POST", "/v1/link", {"token": "not a token"}, 400),
    ("POST", "/v1/explain", {"import": "default/nosuch", "clientIp": "10.0.0.1"}, 404),
    ("GET", "/v1/nosuch-route", None, 404),
    ("PUT", "/v1/status", None, 405),
]
ROUTE_IDS = [f"{method} {path.split('?')[0]}" for method, path, _, _ in ROUTES]

USE = "use a's admin/cert.pem"


@pytest.fixture(scope="module")
def other_fabric(tmp_path_factory: pytest.TempPathFactory) -> Fabric:
    """Another fabric named like ours, with a peer named like ours: only the CA differs."""
    other = Fabric(tmp_path_factory.mktemp("other"), "fab")
    other.peer_dir("a")
    return other


@pytest.fixture(scope="module")
def gateway(start_gateway: StartGateway, fabric: Fabric) -> Gateway:
    fabric.peer_dir("b")  # b's admin certificate is one of the wrong identities
    return start_gateway("a", "--log-level", "debug")


# name -> (certificate directory, the refusal: None for a failed handshake, else the 403 message)
Identity = tuple[Callable[[Fabric, Fabric], Path | None], str | None]
IDENTITIES: dict[str, Identity] = {
    "no certificate": (lambda ours, other: None, None),
    "another fabric's admin certificate": (lambda ours, other: other.path / "a" / "admin", None),
    "another fabric's gateway certificate": (lambda ours, other: other.path / "a", None),
    "the gateway's own certificate": (
        lambda ours, other: ours.path / "a",
        "a certificate cannot administer peer 'a': "
        f"this is the gateway certificate of peer 'a'; {USE}",
    ),
    "another peer's gateway certificate": (
        lambda ours, other: ours.path / "b",
        "a certificate cannot administer peer 'a': "
        f"this is the gateway certificate of peer 'b'; {USE}",
    ),
    "another peer's admin certificate": (
        lambda ours, other: ours.path / "b" / "admin",
        f"the admin certificate of peer 'b' cannot administer peer 'a'; {USE}",
    ),
}

# What the log says for each refusal (any of the client's ports).
HANDSHAKE_LINE = r"admin API refused a TLS handshake from 127\.0\.0\.1:\d+: "
FORBIDDEN_LINE = r"admin API refused the .* from 127\.0\.0\.1:\d+: "


def request(gateway: Gateway, route: tuple[str, str, object, int], cert: Path | None) -> Answer:
    method, path, body, _ = route
    return call(gateway, method, path, cert_dir=cert, body=body)


def count_lines(gateway: Gateway, pattern: str) -> int:
    regex = re.compile(pattern)
    return sum(bool(regex.search(line)) for line in gateway.log().splitlines())


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_route_refuses_every_wrong_identity(
    gateway: Gateway,
    fabric: Fabric,
    other_fabric: Fabric,
    route: tuple[str, str, object, int],
    identity: str,
) -> None:
    cert_of, forbidden_message = IDENTITIES[identity]
    method, path, _, status_when_allowed = route
    route_text = re.escape(f"{method} {path.split('?')[0]}")
    line = HANDSHAKE_LINE if forbidden_message is None else FORBIDDEN_LINE + route_text
    logged_before = count_lines(gateway, line)

    control = request(gateway, route, fabric.path / "a" / "admin")
    answer = request(gateway, route, cert_of(fabric, other_fabric))

    assert control.status == status_when_allowed, control
    if forbidden_message is None:
        assert answer.status is None, answer
        assert "SSL" in answer.error, answer
    else:
        assert answer.status == 403, answer
        assert answer.body == {"reason": "forbidden", "message": forbidden_message}
    wait_until(
        lambda: count_lines(gateway, line) == logged_before + 1,
        what=f"one more log line matching {line!r}",
        timeout_s=5.0,
        describe=lambda _: "\n" + "\n".join(gateway.log().splitlines()[-5:]),
    )


def test_a_refused_handshake_is_logged_with_its_reason(
    gateway: Gateway, fabric: Fabric, other_fabric: Fabric
) -> None:
    call(gateway, "GET", "/v1/status", cert_dir=None)
    call(gateway, "GET", "/v1/status", cert_dir=other_fabric.path / "a" / "admin")

    assert gateway.wait_for_log(HANDSHAKE_LINE + "the client presented no certificate; " + USE)
    assert gateway.wait_for_log(
        HANDSHAKE_LINE + "its certificate does not verify against this fabric's CA "
        r"\(unable to get local issuer certificate\): a certificate of another fabric\?"
    )


def test_repeated_refusals_warn_once_then_go_to_debug(gateway: Gateway, fabric: Fabric) -> None:
    """A script retrying in a loop: the first refusal warns, the rest are debug lines.

    Peer c's admin certificate is used by no other test, so its first refusal is this one's.
    """
    c_admin = fabric.peer_dir("c") / "admin"
    for _ in range(5):
        assert call(gateway, "GET", "/v1/status", cert_dir=c_admin).status == 403

    refused = r"admin API refused the admin certificate of peer 'c' from .*: GET /v1/status"
    gateway.wait_for_log(refused + r" \(repeat, not warned again\)", count=4)
    lines = [line for line in gateway.log().splitlines() if re.search(refused, line)]
    assert len(lines) == 5, lines
    assert " WARNING " in lines[0] and all(" DEBUG " in line for line in lines[1:]), lines
