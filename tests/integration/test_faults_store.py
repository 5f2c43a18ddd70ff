"""Faults of the state store: the disk full, or the state file, its journal
or its directory read-only, when a user applies or deletes resources.

What a user must see: ``apply``/``delete`` exits 1 with one line that says what is wrong
with the disk or the file, and what to do. What must hold: nothing of the failed change is
stored (not even an Import's listener is left bound), every earlier resource is intact, the
gateway goes on serving tunnels, and once the fault is gone the same change applies. At the
end the state file passes SQLite's integrity check and a restarted gateway has exactly what
was acknowledged.

The faults are real: a small tmpfs mounted by the test and filled up, and ``chattr +i``
(immutable, which stops root too). Both need root; without it the tests are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients import Exchange, is_refused, talk
from tests.integration.conftest import StartGateway, StartService
from tests.integration.documents import (
    Document,
    access_policy,
    export,
    import_,
    peer,
    selector,
    yaml_stream,
)
from tests.integration.faults import Bystander
from tests.integration.gateways import Gateway, parse_address
from tests.integration.services import closed_port, echo

pytestmark = pytest.mark.integration

KINDS = ("peer", "export", "import", "accesspolicy")  # these tests make no other kind
NS = "default"
BATCH = 60  # documents per change: far more than any slack left in the state file's pages


def _root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount a tmpfs, chattr +i)"
    for tool in ("mount", "umount", "chattr"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own, unmounted at the end."""
    if reason := _root_reason():
        pytest.skip(reason)
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i`` on ``paths`` for the block (and never left behind)."""
    if reason := _root_reason():
        pytest.skip(reason)
    chattr("+i", *paths)
    try:
        yield
    finally:
        chattr("-i", *paths)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no free block left; returns it (delete it to free)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0, "the disk is not full"
    return filler


def batch(tag: str, fixed_port: int) -> list[Document]:
    """One change: an Import on a fixed port (its listener must not outlive a failed apply),
    and many policies."""
    docs: list[Document] = [
        import_(f"{tag}-import", NS, peer="b", export_name="echo", port=fixed_port)
    ]
    docs += [
        access_policy(f"{tag}-{i}", NS, "allow", to=[selector({"export": f"{tag}-{i:03d}"})])
        for i in range(BATCH)
    ]
    return docs


def everything(gateway: Gateway) -> dict[str, list[dict[str, Any]]]:
    """Every stored resource by kind, without the Peers' live status (one CLI run per kind,
    side by side)."""

    def get(kind: str) -> list[dict[str, Any]]:
        items = gateway.cl("get", kind, "-A", "-o", "json").json()["items"]
        return [{k: v for k, v in item.items() if k != "status"} for item in items]

    with ThreadPoolExecutor(max_workers=len(KINDS)) as pool:
        return dict(zip(KINDS, pool.map(get, KINDS), strict=True))


def integrity(state: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@dataclass
class Site:
    """Gateway ``a`` (its state at ``state``) importing ``echo`` from gateway ``b``."""

    a: Gateway
    b: Gateway
    state: Path
    echo: tuple[str, int]
    stored: dict[str, list[dict[str, Any]]]  # what ``a`` has stored before the fault


@pytest.fixture
def open_site(
    start_gateway: StartGateway, start_service: StartService
) -> Iterator[Callable[[Path], Site]]:
    """``open_site(state_path)``: the two gateways, connected, with an echo tunnel working.
    Gateway ``a`` is stopped (and checked) by the test or here, before its disk goes away."""
    started: list[Gateway] = []

    def open_(state: Path) -> Site:
        a, b = start_gateway("a", "--state", str(state)), start_gateway("b")
        started.extend((a, b))
        allow = access_policy("allow-all", NS, "allow")
        b.apply(peer("a", a.listen), export("echo", NS, start_service(echo).port), allow)
        a.apply(peer("b", b.listen), import_("echo", NS, peer="b"), allow)
        address = parse_address(a.get("import", "echo")["status"]["listen"])
        assert talk(address, b"hello") == Exchange(b"hello", "eof")
        return Site(a, b, state, address, everything(a))

    yield open_
    for gateway in started:
        gateway.stop()


def change_fails(site: Site, *clues: str) -> None:
    """A change under the fault: refused whole, with the clues in one line; the gateway keeps
    its resources and serves on."""
    port = closed_port()
    bystander = Bystander(site.echo)
    try:
        applied = site.a.cl("apply", "-f", "-", stdin=yaml_stream(*batch("new", port)))
        deleted = site.a.cl("delete", "accesspolicy", "allow-all", "-n", NS)

        for result in (applied, deleted):
            assert result.rc == 1, result
            line = result.stderr.strip()
            assert "\n" not in line and "Traceback" not in line, result
            for clue in (*clues, str(site.state)):
                assert clue in line, f"{clue!r} not in {line!r}"
        assert everything(site.a) == site.stored, "the failed change left a trace"
        assert is_refused(("127.0.0.1", port)), "the failed apply left its listener bound"
        assert site.a.wait_for_log(r"ERROR .*state store failure: cannot apply resources")
        bystander.check()
        assert talk(site.echo, b"still") == Exchange(b"still", "eof")
    finally:
        bystander.close()


def change_works_again(site: Site) -> None:
    """The same change, with the fault gone: applied whole and served at once; then a clean
    stop, an intact file, and a restart that reads back exactly what was acknowledged."""
    port = closed_port()
    site.a.apply(*batch("new", port))
    assert talk(("127.0.0.1", port), b"new") == Exchange(b"new", "eof")
    after = everything(site.a)
    assert len(after["accesspolicy"]) == len(site.stored["accesspolicy"]) + BATCH
    site.a.stop()
    assert integrity(site.state) == "ok"
    site.a = Gateway(
        site.a.peer_dir,
        log_path=site.a.log_path.with_suffix(".again.log"),
        extra_args=("--state", str(site.state)),
    )
    try:
        assert everything(site.a) == after
    finally:
        site.a.stop()


def test_disk_full_refuses_changes_clearly_and_keeps_everything(
    disk: Path, open_site: Callable[[Path], Site]
) -> None:
    site = open_site(disk / "state.db")
    filler = fill(disk)

    change_fails(site, "disk", "full")

    filler.unlink()
    change_works_again(site)


@pytest.mark.parametrize("what", ["state file", "journal", "directory"])
def test_read_only_state_refuses_changes_clearly_and_keeps_everything(
    tmp_path: Path, open_site: Callable[[Path], Site], what: str
) -> None:
    state = tmp_path / "state" / "state.db"
    site = open_site(state)
    target = {
        "state file": state,
        "journal": state.with_name("state.db-wal"),
        "directory": state.parent,
    }[what]

    with immutable(target):
        change_fails(site, "read-only")

    change_works_again(site)
