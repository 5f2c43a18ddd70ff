"""The Containerfile agrees with what runs it: the Deployment's user, the project's Python,
the console script. The image is not built here (no container engine); the text is read."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from clusterlink.ids import PeerName
from clusterlink.manifests import PEER_PORT, RUN_AS_UID, PeerDeployment, peer_manifests

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "Containerfile").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", text, re.MULTILINE)]


def pod_spec() -> dict[str, Any]:
    objects = peer_manifests(
        PeerDeployment(peer=PeerName("a")), {"cert.pem": b"", "key.pem": b"", "ca.pem": b""}
    )
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_the_image_user_is_the_deployments_non_root_uid_and_gid() -> None:
    security = pod_spec()["securityContext"]
    (user,) = instructions("USER")
    (run_user,) = [run for run in instructions("RUN") if "useradd" in run]

    assert user == f"{security['runAsUser']}:{security['runAsGroup']}"
    assert security["runAsUser"] == security["runAsGroup"] == RUN_AS_UID
    assert f"--uid {RUN_AS_UID}" in run_user and f"--gid {RUN_AS_UID}" in run_user
    assert f"groupadd --system --gid {RUN_AS_UID}" in run_user


def test_the_image_python_is_the_version_the_project_requires() -> None:
    (argument,) = instructions("ARG")
    name, _, version = argument.partition("=")
    required = SpecifierSet(PROJECT["requires-python"])
    (lowest,) = [Version(spec.version) for spec in required if spec.operator == ">="]

    assert name == "PYTHON_VERSION"
    assert Version(version) in required
    assert Version(version) == lowest  # built on what the project supports and tests
    for base in instructions("FROM"):
        assert base.startswith("docker.io/library/python:${PYTHON_VERSION}-slim"), base


def test_a_wheel_is_built_in_one_stage_and_installed_in_another() -> None:
    stages = instructions("FROM")

    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert any(run.startswith("pip wheel") for run in instructions("RUN"))
    assert instructions("COPY")[-1].startswith("--from=build ")


def test_the_entrypoint_is_the_console_script_the_deployment_gives_arguments_to() -> None:
    (container,) = pod_spec()["containers"]

    assert instructions("ENTRYPOINT") == ['["clusterlink"]']
    assert "clusterlink" in PROJECT["scripts"]
    assert "command" not in container and container["args"][:2] == ["gateway", "run"]


def test_the_peer_port_is_exposed() -> None:
    (exposed,) = instructions("EXPOSE")

    assert str(PEER_PORT) in exposed.split()


def test_the_build_context_holds_only_the_package_sources() -> None:
    """A peer directory next to the sources (keys!) must never reach an image layer."""
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/"}
