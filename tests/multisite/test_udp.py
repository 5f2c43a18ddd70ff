"""UDP across sites: dnsmasq in site b, exported as UDP, asked with dig from site a through
a's UDP Import; a deny policy at b leaves the next flow without an answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.documents import PEER_NAME, access_policy, selector
from tests.integration.udp_services import (
    ANSWER,
    MISSING,
    dig,
    dnsmasq,
    free_udp_port,
    udp_export,
    udp_import,
)
from tests.multisite.netns import Network
from tests.multisite.sites import ALLOW_ALL, FAST_HEALTH, Launcher, apply_all

pytestmark = [pytest.mark.multisite, pytest.mark.skipif(bool(MISSING), reason=str(MISSING))]


@pytest.fixture
def dns_in_b(network: Network) -> Iterator[tuple[str, int]]:
    """dnsmasq on site b's own address (not loopback: the export crosses b's network)."""
    site = network.sites["b"]
    port = free_udp_port()
    with dnsmasq(port, host=site.address, prefix=site.prefix):
        yield site.address, port


def test_dig_in_site_a_reaches_dnsmasq_in_site_b_until_b_denies_a(
    launcher: Launcher, dns_in_b: tuple[str, int]
) -> None:
    host, port = dns_in_b
    a, b = launcher.start_all("a", "b", args=(*FAST_HEALTH, "--udp-idle-timeout", "2"))
    apply_all(
        {
            a: [b.as_peer(), udp_import("dns", "default", "b"), ALLOW_ALL],
            b: [a.as_peer(), udp_export("dns", "default", port, host=host), ALLOW_ALL],
        }
    )
    _, import_port = a.import_address("dns")

    assert dig(import_port, prefix=a.site.prefix) == ANSWER
    assert a.wait_for_log(r"egress allowed import=default/dns ")

    b.apply(access_policy("deny-a", "default", "deny", from_=[selector({PEER_NAME: "a"})]))

    assert dig(import_port, tries=1, prefix=a.site.prefix) == ""
    assert b.wait_for_log(r"ingress denied peer=a export=default/dns .*deny-a")
