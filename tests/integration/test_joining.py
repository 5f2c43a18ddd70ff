"""Joining sites without moving a private key (DESIGN §10), through the real CLI and gateways.

Every site here joins the way the README says: ``create peer-key`` in its own directory, its
``request.csr`` copied to the fabric owner's directory (the only thing that travels there),
``sign``, ``cert.pem`` and ``ca.pem`` copied back, ``install peer-cert``; then its gateway runs.
Sites ``a`` and ``b`` link with ``invite``/``link`` and carry a tunnel; the other sites serve
the refusals, each of which must exit 1 with one line and leave no Peer on either side.
"""

from __future__ import annotations

import base64
import json
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.integration.admin_http import call
from tests.integration.clients import Exchange, talk
from tests.integration.documents import access_policy, export, import_, peer
from tests.integration.gateways import CLResult, Gateway, cl, parse_address, stop_all
from tests.integration.services import TCPService, closed_port, echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

TOKEN_PREFIX = "cl-invite-v1."


@dataclass
class World:
    """A fabric owner's directory, the sites that joined it, and their running gateways."""

    root: Path
    gateways: dict[str, Gateway] = field(default_factory=dict)

    def owner(self, fabric_root: str = "owner") -> Path:
        return self.root / fabric_root

    def join(self, name: str, *, owner: str = "owner") -> Gateway:
        """``name`` joins the fabric kept in ``owner`` and its gateway starts."""
        site = self.root / "sites" / name
        cl("create", "peer-key", "--name", name, "--path", str(site)).expect_ok()
        peer_dir = site / name
        inbox = self.owner(owner) / "inbox" / name
        inbox.mkdir(parents=True)
        shutil.copy(peer_dir / "request.csr", inbox)  # what travels to the owner
        cl(
            "sign",
            "--csr",
            str(inbox / "request.csr"),
            "--fabric",
            "fab",
            "--path",
            str(self.owner(owner)),
        ).expect_ok()
        back = site / "from-owner"
        back.mkdir()
        for answer in ("cert.pem", "ca.pem"):  # what travels back
            shutil.copy(inbox / answer, back)
        cl(
            "install",
            "peer-cert",
            "--peer-dir",
            str(peer_dir),
            "--cert",
            str(back / "cert.pem"),
            "--ca",
            str(back / "ca.pem"),
        ).expect_ok()
        gateway = Gateway(
            peer_dir,
            log_path=self.root / f"gateway-{name}.log",
            extra_args=("--label", f"site={name}"),
        )
        self.gateways[name] = gateway
        return gateway

    def token_path(self, name: str) -> Path:
        return self.root / "tokens" / name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("joining"))
    (world.root / "tokens").mkdir()
    for owner in ("owner", "other-owner"):  # two fabrics, both named fab: only the CA differs
        cl("create", "fabric", "--name", "fab", "--path", str(world.owner(owner))).expect_ok()
    yield world
    stop_all(world.gateways.values())


def invite(inviter: Gateway, invited: str, token: Path, *args: str) -> CLResult:
    return inviter.cl("invite", "--name", invited, "-o", str(token), *args).expect_ok()


def peers(gateway: Gateway) -> dict[str, Any]:
    items = gateway.cl("get", "peers", "-o", "json").json()["items"]
    return {item["metadata"]["name"]: item for item in items}


def refused(gateway: Gateway, token: Path) -> str:
    """``link`` at ``gateway`` exits 1 with exactly one line on stderr: that line."""
    result = gateway.cl("link", str(token))
    assert result.rc == 1, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: "), line
    assert result.stdout == ""
    return line.removeprefix("error: ")


def fields_of(token: str) -> dict[str, Any]:
    payload = token.strip().removeprefix(TOKEN_PREFIX)
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def rewritten(token: Path, out: Path, **changes: object) -> Path:
    fields = {**fields_of(token.read_text()), **changes}
    raw = json.dumps(fields, separators=(",", ":")).encode()
    out.write_text(TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=") + "\n")
    return out


def address(gateway: Gateway) -> str:
    host, port = gateway.listen
    return f"{host}:{port}"


# --- the whole flow ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linked(world: World) -> tuple[Gateway, Gateway]:
    """Sites a and b, joined and linked with a one-use invitation of a."""
    a, b = world.join("a"), world.join("b")
    token = world.token_path("b.token")
    invited = invite(a, "b", token)
    assert invited.stdout == ""
    (note,) = invited.stderr.splitlines()
    assert note.startswith("invitation ") and f"dialling {address(a)}" in note
    assert stat.S_IMODE(token.stat().st_mode) == 0o600

    result = b.cl("link", str(token)).expect_ok()

    assert result.stdout.splitlines() == [
        f"peer.clusterlink.net/a created here (gateways {address(a)}, labels site=a)",
        f"peer.clusterlink.net/b created at a (gateways {address(b)}, labels site=b)",
    ]
    return a, b


def test_linked_sites_have_each_others_peer_with_addresses_and_labels(
    linked: tuple[Gateway, Gateway],
) -> None:
    a, b = linked
    host_a, port_a = a.listen
    host_b, port_b = b.listen

    peer_b, peer_a = peers(a)["b"], peers(b)["a"]

    assert peer_b["spec"]["gateways"] == [{"host": host_b, "port": port_b}]
    assert peer_b["metadata"]["labels"] == {"site": "b"}
    assert peer_a["spec"]["gateways"] == [{"host": host_a, "port": port_a}]
    assert peer_a["metadata"]["labels"] == {"site": "a"}
    for gateway, other in ((a, "b"), (b, "a")):
        wait_until(
            partial(is_peered, gateway, other),
            what=f"{gateway.name} hears {other}'s heartbeats and is its Peer",
        )


def is_peered(gateway: Gateway, other: str) -> bool:
    """Whether ``other`` answers ``gateway``'s heartbeats and has a Peer for it."""
    return bool((peers(gateway)[other].get("status") or {}).get("peered"))


def test_a_tunnel_works_between_linked_sites(linked: tuple[Gateway, Gateway]) -> None:
    """Exported at a, imported at b, allowed on both sides."""
    a, b = linked
    service = TCPService(echo)
    try:
        a.apply(export("echo", "joined", service.port), access_policy("allow", "joined", "allow"))
        b.apply(import_("echo", "joined", peer="a"), access_policy("allow", "joined", "allow"))
        listen = wait_until(
            lambda: (b.get("import", "echo", "joined").get("status") or {}).get("listen"),
            what="b's import listens",
        )

        def echoed() -> Exchange | None:
            exchange = talk(parse_address(listen), b"across the link")
            return exchange if exchange.received == b"across the link" else None

        exchange = wait_until(echoed, what="bytes go through the tunnel and come back")
    finally:
        service.close()
    assert exchange.end == "eof"


def test_a_used_invitation_is_refused_and_changes_nothing(
    linked: tuple[Gateway, Gateway], world: World
) -> None:
    a, b = linked
    before = (peers(a), peers(b))

    line = refused(b, world.token_path("b.token"))

    assert line.startswith("peer a refused the link: invitation ")
    assert "has been used already (1 of 1 link(s)); ask for a new one: " in line
    assert _specs(peers(a)) == _specs(before[0]) and _specs(peers(b)) == _specs(before[1])


def _specs(items: dict[str, Any]) -> dict[str, Any]:
    return {name: (item["spec"], item["metadata"]["labels"]) for name, item in items.items()}


def test_no_private_key_leaves_its_site(linked: tuple[Gateway, Gateway], world: World) -> None:
    """What the owner received (requests), sent back (certificates, CAs), and the tokens."""
    owner_files = [p for p in world.owner().rglob("*") if p.is_file()]
    travelled = [p for p in world.owner().joinpath("inbox").rglob("*") if p.is_file()]
    travelled += [p for p in (world.root / "sites").rglob("from-owner/*")]
    travelled += list((world.root / "tokens").iterdir())

    assert {p.name for p in travelled} >= {"request.csr", "cert.pem", "ca.pem", "b.token"}
    assert [str(p) for p in travelled if b"PRIVATE KEY" in p.read_bytes()] == []
    assert [p.relative_to(world.owner()) for p in owner_files if p.name == "key.pem"] == [
        Path("fab/key.pem")  # the fabric's own CA key, and no site's
    ]


def test_a_sites_own_admin_certificate_administers_its_gateway_only(
    linked: tuple[Gateway, Gateway], world: World
) -> None:
    a, b = linked
    cl("create", "peer-cert", "--name", "c", "--fabric", "fab", "--path", str(world.owner()))
    fabric_admin_of_c = world.owner() / "fab" / "c" / "admin"

    assert call(a, "GET", "/v1/status", cert_dir=a.peer_dir / "admin").status == 200
    other_site = call(a, "GET", "/v1/status", cert_dir=b.peer_dir / "admin")
    gateway_cert = call(a, "GET", "/v1/status", cert_dir=a.peer_dir)
    other_admin = call(a, "GET", "/v1/status", cert_dir=fabric_admin_of_c)

    assert other_site.status is None and "SSL" in other_site.error  # b's admin CA: untrusted
    assert gateway_cert.status == 403
    assert "this is the gateway certificate of peer 'a'" in gateway_cert.body["message"]
    assert other_admin.status == 403
    assert (
        "the admin certificate of peer 'c' cannot administer peer 'a'"
        in (other_admin.body["message"])
    )


# --- refusals: exit 1, one line, nothing created on either side --------------------------------


@pytest.fixture(scope="module")
def strangers(world: World) -> tuple[Gateway, Gateway, Gateway]:
    """p invites; q is invited; r is a third site of the fabric. None of them has a Peer."""
    return world.join("p"), world.join("q"), world.join("r")


@pytest.fixture
def untouched(strangers: tuple[Gateway, Gateway, Gateway]) -> Iterator[None]:
    yield
    for gateway in strangers:
        assert peers(gateway) == {}, f"{gateway.name} got a Peer from a refused link"


@pytest.mark.usefixtures("untouched")
def test_an_expired_invitation_is_refused(
    strangers: tuple[Gateway, Gateway, Gateway], world: World
) -> None:
    p, q, _ = strangers
    token = world.token_path("expired.token")
    invite(p, "q", token, "--ttl", "1s")
    time.sleep(1.2)  # the expiry is a moment on p's clock: only time passing reaches it

    line = refused(q, token)

    assert line.startswith("peer p refused the link: invitation ")
    assert (
        " expired at " in line and "ask for a new one: `clusterlink invite --name q` at p" in line
    )


@pytest.mark.usefixtures("untouched")
def test_a_tampered_token_is_refused(
    strangers: tuple[Gateway, Gateway, Gateway], world: World
) -> None:
    p, q, _ = strangers
    token = world.token_path("genuine.token")
    invite(p, "q", token)
    tampered = rewritten(token, world.token_path("tampered.token"), uses=100)

    line = refused(q, tampered)

    assert line.startswith("peer p refused the link: the token is not the one issued for ")


@pytest.mark.usefixtures("untouched")
def test_an_invitation_for_another_name_is_refused_by_the_inviter(
    strangers: tuple[Gateway, Gateway, Gateway], world: World
) -> None:
    p, _, r = strangers
    token = world.token_path("for-q.token")
    invite(p, "q", token)

    line = refused(r, token)

    assert line.endswith(
        "invites peer q, but the caller's certificate names peer r; link from q's gateway, "
        "or ask for an invitation for r"
    )


@pytest.mark.usefixtures("untouched")
def test_a_token_of_another_fabric_is_refused_before_dialling(
    strangers: tuple[Gateway, Gateway, Gateway], world: World
) -> None:
    p, _, _ = strangers
    z = world.join("z", owner="other-owner")
    token = world.token_path("for-z.token")
    invite(p, "z", token)
    logged_before = p.log().count("refused the link")

    line = refused(z, token)

    ours = fields_of(token.read_text())["fabricCA"][: len("SHA256:") + 16]
    assert line.startswith(f"this token is for another fabric (CA {ours}), this peer belongs ")
    assert line.count("SHA256:") == 2 and not line.endswith(ours)
    assert peers(z) == {}
    assert p.log().count("refused the link") == logged_before  # p was never dialled


@pytest.mark.usefixtures("untouched")
def test_an_inviter_that_cannot_be_reached_is_said_so(
    strangers: tuple[Gateway, Gateway, Gateway], world: World
) -> None:
    p, q, _ = strangers
    token = world.token_path("unreachable.token")
    invite(p, "q", token, "--address", f"127.0.0.1:{closed_port()}")

    line = refused(q, token)

    assert line.startswith("cannot reach peer p: peer p at 127.0.0.1:")
    assert "connection refused" in line and "Nothing was changed on either side" in line


@pytest.mark.parametrize(
    ("side", "refusal"),
    [
        ("invited", "a Peer p already exists here with other gateways (127.0.0.1:1, "),
        ("inviter", "peer p refused the link: peer p already has a Peer q with other "),
    ],
)
def test_a_different_peer_in_the_way_is_not_overwritten_on_either_side(
    strangers: tuple[Gateway, Gateway, Gateway], world: World, side: str, refusal: str
) -> None:
    p, q, _ = strangers
    holder, other, name = (q, p, "p") if side == "invited" else (p, q, "q")
    holder.apply(peer(name, ("127.0.0.1", 1)))
    try:
        token = world.token_path(f"conflict-{side}.token")
        invite(p, "q", token)

        line = refused(q, token)

        assert line.startswith(refusal)
        assert peers(holder)[name]["spec"]["gateways"] == [{"host": "127.0.0.1", "port": 1}]
        assert peers(other) == {}
    finally:
        holder.delete("peer", name)


@pytest.mark.usefixtures("untouched")
def test_what_is_no_token_is_refused_in_one_line(
    strangers: tuple[Gateway, Gateway, Gateway], world: World
) -> None:
    _, q, _ = strangers
    garbage = world.token_path("garbage.token")
    garbage.write_text("hello\n")

    line = refused(q, garbage)

    assert line.startswith("this is not a ClusterLink invitation token (it does not start with ")
