"""Authorization at both ends of a real tunnel (DESIGN §4, §5), seen from the client.

Each test builds its own Export/Import/policies in its own namespace (see conftest) and then
connects to the import's listener like any local client. A refused connection must be reset
before any byte and the service never reached; the gateway that decided must log the decision
and the policy behind it (``import=`` lines are the source's egress, ``export=`` lines the
target's ingress).
"""

from __future__ import annotations

import pytest

from tests.integration.clients import Exchange, talk
from tests.integration.conftest import Link, StartService
from tests.integration.documents import EXPORT_NAME, PEER_LABEL, PEER_NAME, selector
from tests.integration.services import TCPService, echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

REFUSED = Exchange(b"", "reset")
ECHOED = Exchange(b"hello", "eof")
DEFAULT_DENY = "deny (default deny: no policy matched)"


@pytest.fixture
def service(start_service: StartService) -> TCPService:
    return start_service(echo)


def test_denied_connection_is_reset_before_any_byte(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port)

    assert talk(address, b"hello") == REFUSED
    assert link.egress_log("echo", "refused").endswith(f"b/{link.namespace}/echo: {DEFAULT_DENY}")
    assert f"export={link.namespace}/echo " not in link.target.log()  # no CONNECT was sent
    assert service.connections == 0


def test_allow_on_source_only_is_denied_by_target_ingress(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port)
    link.policy(link.source, "allow-all", "allow")

    assert talk(address, b"hello") == REFUSED
    assert link.ingress_log("echo", "denied").endswith(DEFAULT_DENY)
    assert "answered 403 denied" in link.egress_log("echo", "refused")
    assert service.connections == 0


def test_allow_on_target_only_is_denied_by_source_egress(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port)
    link.policy(link.target, "allow-all", "allow")

    assert talk(address, b"hello") == REFUSED
    assert link.egress_log("echo", "refused").endswith(DEFAULT_DENY)
    assert f"export={link.namespace}/echo " not in link.target.log()
    assert service.connections == 0


def test_allow_on_both_sides_lets_data_flow(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port)
    link.allow_both()

    assert talk(address, b"hello") == ECHOED
    allowed_by = f"allow by policy {link.namespace}/allow-all"
    assert link.egress_log("echo", "allowed").endswith(allowed_by)
    assert link.ingress_log("echo", "allowed").endswith(allowed_by)
    assert "bytes_up=5 bytes_down=5" in link.egress_log("echo", "closed")


@pytest.mark.parametrize("side", ["source", "target"])
def test_deny_policy_beside_an_allow_wins(link: Link, service: TCPService, side: str) -> None:
    address = link.open("echo", service.port, allow=True)  # allow-all on both sides
    link.policy(getattr(link, side), "no-echo", "deny")

    assert talk(address, b"hello") == REFUSED
    denied_by = f"deny by policy {link.namespace}/no-echo"
    if side == "source":
        assert link.egress_log("echo", "refused").endswith(denied_by)
    else:
        assert link.ingress_log("echo", "denied").endswith(denied_by)
    assert service.connections == 0


def test_privileged_allow_overrides_a_regular_deny(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port, allow=True)  # allow-all on both sides
    link.policy(link.source, "deny-all", "deny")
    name = link.privileged(link.source, "allow", "allow")

    assert talk(address, b"hello") == ECHOED
    assert link.egress_log("echo", "allowed").endswith(f"allow by privileged policy {name}")


def test_privileged_deny_overrides_a_regular_allow(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port, allow=True)  # allow-all on both sides
    name = link.privileged(link.target, "deny", "deny")

    assert talk(address, b"hello") == REFUSED
    assert link.ingress_log("echo", "denied").endswith(f"deny by privileged policy {name}")
    assert service.connections == 0


def test_ingress_policy_selects_the_calling_peer_by_name(link: Link, service: TCPService) -> None:
    address = link.open("echo", service.port)
    link.policy(link.source, "allow-all", "allow")
    link.policy(link.target, "from-c", "allow", from_=[selector({PEER_NAME: "c"})])

    assert talk(address, b"hello") == REFUSED
    assert link.ingress_log("echo", "denied").endswith(DEFAULT_DENY)

    link.policy(link.target, "from-a", "allow", from_=[selector({PEER_NAME: "a"})])

    assert talk(address, b"hello") == ECHOED
    assert link.ingress_log("echo", "allowed").endswith(f"allow by policy {link.namespace}/from-a")


def test_policies_select_peers_by_their_labels(link: Link, service: TCPService) -> None:
    """a's egress policy names b by the label b announces in its heartbeats; b's ingress policy
    names a by the label a sends along with the CONNECT."""
    site = PEER_LABEL + "site"
    address = link.open("echo", service.port)
    link.policy(link.source, "to-site-b", "allow", to=[selector({site: "b"})])
    link.policy(link.target, "from-elsewhere", "allow", from_=[selector({site: "elsewhere"})])

    def labels_of_b() -> bool:
        status = link.source.cl("status", "-o", "json").json()
        return any(p["name"] == "b" and p["labels"] == {"site": "b"} for p in status["peers"])

    wait_until(labels_of_b, what="a has learned b's labels from its heartbeats")

    assert talk(address, b"hello") == REFUSED
    assert link.ingress_log("echo", "denied").endswith(DEFAULT_DENY)  # egress let it through

    link.policy(link.target, "from-site-a", "allow", from_=[selector({site: "a"})])

    assert talk(address, b"hello") == ECHOED
    allowed_by = "allow by policy {}/{}"
    assert link.egress_log("echo", "allowed").endswith(
        allowed_by.format(link.namespace, "to-site-b")
    )
    assert link.ingress_log("echo", "allowed").endswith(
        allowed_by.format(link.namespace, "from-site-a")
    )


def test_policies_select_exports_by_name_expressions(link: Link, service: TCPService) -> None:
    """Source allows exports In [x, y], target allows exports NotIn [y]: x gets through, y is
    refused by the target, z by the source."""
    x, y, z = (link.open(name, service.port) for name in "xyz")
    in_x_y = {"key": EXPORT_NAME, "operator": "In", "values": ["x", "y"]}
    not_in_y = {"key": EXPORT_NAME, "operator": "NotIn", "values": ["y"]}
    link.policy(link.source, "to-x-y", "allow", to=[selector(expressions=[in_x_y])])
    link.policy(link.target, "not-y", "allow", to=[selector(expressions=[not_in_y])])

    assert talk(x, b"hello") == ECHOED
    assert talk(y, b"hello") == REFUSED
    assert talk(z, b"hello") == REFUSED
    assert link.ingress_log("x", "allowed").endswith(f"allow by policy {link.namespace}/not-y")
    assert link.ingress_log("y", "denied").endswith(DEFAULT_DENY)
    assert link.egress_log("z", "refused").endswith(DEFAULT_DENY)
    assert service.connections == 1


def test_policy_changes_apply_to_the_next_connection_without_restart(
    link: Link, service: TCPService
) -> None:
    address = link.open("echo", service.port)
    assert talk(address, b"hello") == REFUSED

    link.allow_both()
    assert talk(address, b"hello") == ECHOED

    link.source.delete("accesspolicy", "allow-all", link.namespace)
    assert talk(address, b"hello") == REFUSED
    assert link.egress_log("echo", "refused", count=2).endswith(DEFAULT_DENY)
    assert link.source.process.poll() is None and link.target.process.poll() is None
