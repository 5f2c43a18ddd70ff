"""What an operator sees: flow records (``clusterlink flows``) and the dashboard, against real
gateways; the dashboard in a real browser (headless Chromium driven through chromedriver).

Flows: every tunnel opened or refused is a record, at both ends, with the decision and the
policy that made it, and its bytes and duration once it ends. The dashboard: what a person
sees on the page changes as the fabric does, without reloading it: a denied connection
appears, highlighted, and a peer whose gateway stops turns unreachable on the map.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clients import Exchange, talk
from tests.integration.conftest import Link, StartGateway, StartService
from tests.integration.documents import access_policy, export, import_from, peer
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration


def _records(link_side: Any, *args: str) -> list[dict[str, Any]]:
    done = link_side.cl("flows", "-o", "json", *args).expect_ok()
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_flows_show_allowed_and_refused_tunnels_with_their_policy_at_both_ends(
    link: Link, start_service: StartService
) -> None:
    address = link.open("echo", start_service(echo).port, allow=True)
    denied = link.import_("closed")  # no export of that name at the target

    assert talk(address, b"hello") == Exchange(b"hello", "eof")
    assert talk(denied, b"hi").end == "reset"

    resource = f"{link.namespace}/echo"

    def ended() -> dict[str, Any] | None:
        return next(
            (
                r
                for r in _records(link.source)
                if r["resource"] == resource and r["endedAt"] and r["decision"] == "allowed"
            ),
            None,
        )

    allowed = wait_until(ended, what="the source lists the tunnel as ended")
    assert (allowed["direction"], allowed["peer"], allowed["policy"]) == (
        "egress",
        link.target.name,
        f"{link.namespace}/allow-all",
    )
    assert (allowed["bytesUp"], allowed["bytesDown"]) == (5, 5)
    assert allowed["setupS"] > 0 and allowed["durationS"] >= 0
    refused = [r for r in _records(link.source) if r["resource"] == f"{link.namespace}/closed"]
    assert [r["decision"] for r in refused] == ["failed"]
    assert "answered 404" in refused[0]["reason"]
    # The target has its side of both: the tunnel it served and the request it refused.
    at_target = _records(link.target)
    assert any(r["resource"] == resource and r["direction"] == "ingress" for r in at_target)
    assert any(
        r["resource"] == f"{link.namespace}/closed" and r["decision"] == "failed" for r in at_target
    )


def test_a_denial_names_the_policy_and_the_table_shows_it(link: Link) -> None:
    address = link.import_("nope")
    link.policy(link.source, "deny-nope", "deny")  # no allow at all, and a deny on top

    assert talk(address, b"x").end == "reset"

    record = wait_until(
        lambda: next(
            (r for r in _records(link.source) if r["resource"] == f"{link.namespace}/nope"),
            None,
        ),
        what="the denial is recorded",
    )
    assert (record["decision"], record["policy"]) == ("denied", f"{link.namespace}/deny-nope")
    table = link.source.cl("flows").expect_ok().stdout
    assert re.search(
        rf"{link.namespace}/nope +{link.target.name} .* denied +{link.namespace}/deny-nope", table
    )


# -- the dashboard, in a real browser -----------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


class Dashboard:
    """``clusterlink dashboard`` for one gateway, on a free loopback port."""

    def __init__(self, peer_dir: Path, log: Path) -> None:
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clusterlink",
                "--peer-dir",
                str(peer_dir),
                "dashboard",
                "--listen",
                "127.0.0.1:0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url: str = wait_until(
            self._url, what="the dashboard says where it serves", describe=lambda _: log.read_text()
        )

    def _url(self) -> str | None:
        found = re.search(r"on (http://127\.0\.0\.1:\d+/)", self._log_text())
        return found.group(1) if found else None

    def _log_text(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, (
        "Debian's chromium and chromium-driver are missing: ./setup.sh installs them"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or ""), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_dashboard_shows_a_denied_flow_and_a_peer_that_goes_away(
    start_gateway: StartGateway, start_service: StartService, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    ns = "dash"
    viewer, other = start_gateway("viewer"), start_gateway("other")
    other.apply(peer("viewer", viewer.listen), export("web", ns, start_service(echo).port))
    other.apply(access_policy("allow-all", ns, "allow"))
    viewer.apply(peer("other", other.listen), import_from("web", ns, peers=["other"]))
    dashboard = Dashboard(viewer.peer_dir, tmp_path / "dashboard.log")
    try:
        browser.get(dashboard.url)

        # Each read is one script, so that a redraw between finding an element and reading
        # it cannot make the read fail.
        def state_of(name: str) -> str | None:
            state: str | None = browser.execute_script(
                "const n = document.querySelector(`#map [data-peer='${arguments[0]}']`);"
                "return n ? n.dataset.state : null;",
                name,
            )
            return state

        wait_until(lambda: state_of("other") == "reachable", what="the map shows other reachable")
        assert browser.find_element(By.ID, "gateway-name").text == "viewer"

        listen = viewer.get("import", "web", ns)["status"]["listen"]
        host, port = listen.rsplit(":", 1)
        assert talk((host, int(port)), b"x").end == "reset"  # no allow policy at viewer

        def denied_rows() -> list[dict[str, str]]:
            rows: list[dict[str, str]] = browser.execute_script(
                "return [...document.querySelectorAll('#flows tr[data-decision=\"denied\"]')]"
                ".map((r) => ({text: r.innerText, cls: r.className}));"
            )
            return rows

        rows = wait_until(denied_rows, what="the denied flow appears without a reload")
        assert "default deny" in rows[0]["text"]
        assert rows[0]["cls"] == "refused"  # highlighted

        other.stop()
        wait_until(
            lambda: state_of("other") == "unreachable",
            what="the stopped peer turns unreachable on the map",
            timeout_s=20,
        )
        shot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("CLUSTERLINK_DASHBOARD_SHOT"):  # refreshing the README's picture
            shutil.copy(shot, os.environ["CLUSTERLINK_DASHBOARD_SHOT"])
    finally:
        dashboard.close()
