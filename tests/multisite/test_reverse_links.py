"""A site that takes no inbound connection at all (every SYN dropped, as behind NAT) still
exports: its gateway dials out and keeps a link, and the other site's tunnels use it. A cut
link turns the site unreachable at the other end; mended, it comes back and serves again."""

from __future__ import annotations

import socket

import pytest

from tests.integration.documents import Document, import_
from tests.multisite.netns import Network, Site, entered, inbound_refused
from tests.multisite.sites import ALLOW_ALL, PEER_PORT, Launcher, apply_all
from tests.multisite.traffic import ServeIn, talk_in, web_export

pytestmark = pytest.mark.multisite

CUT_DETECTION_BOUND_S = 15.0  # 5 beats that each time out after 1 s, plus slack
RECOVERY_BOUND_S = 15.0  # the dialling side hears the other again and dials at once


def _dials_in(name: str) -> Document:
    return {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": "Peer",
        "metadata": {"name": name},
        "spec": {"dialsIn": True},
    }


def _times_out(site_address: str, from_site: Site) -> bool:
    """A plain connection to ``site_address``'s peer port gets no answer at all."""
    with entered(from_site), socket.socket() as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((site_address, PEER_PORT))
        except TimeoutError:
            return True
        except OSError:
            return False
        return False


def test_a_site_refusing_every_inbound_connection_exports_over_the_link_it_keeps(
    launcher: Launcher, network: Network, serve: ServeIn
) -> None:
    b_site = network.sites["b"]
    with inbound_refused(b_site):
        a, b = launcher.start_all("a", "b")
        apply_all(
            {
                a: [_dials_in("b"), import_("web", "default", peer="b"), ALLOW_ALL],
                b: [a.as_peer(), web_export(serve, "b"), ALLOW_ALL],
            }
        )
        assert _times_out(b_site.address, network.sites["a"])  # nobody can dial b

        a.wait_reachable("b", True, timeout_s=RECOVERY_BOUND_S)
        address = a.import_address("web")
        exchange = talk_in(a.site, address)
        assert (exchange.received, exchange.end) == (b"b", "eof"), str(exchange)
        b.wait_for_log(r"reverse link to peer a is up")

        network.cut(b_site)
        entry = a.wait_reachable("b", False, timeout_s=CUT_DETECTION_BOUND_S)
        assert entry["reason"].startswith("peer b dials in; "), entry
        refused = talk_in(a.site, address, timeout_s=5)
        assert refused.received == b"", str(refused)

        network.mend(b_site)
        a.wait_reachable("b", True, timeout_s=RECOVERY_BOUND_S)
        again = talk_in(a.site, address)
        assert (again.received, again.end) == (b"b", "eof"), str(again)
