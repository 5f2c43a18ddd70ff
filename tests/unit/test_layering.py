"""The import rules of DESIGN §8 and CONTRIBUTING.md, read from the source (no imports run).

Which package may import which is what keeps the pure parts pure (testable without sockets)
and the command line fast to start; a rule broken by accident fails here, naming the file
and the import, instead of showing up later as a cycle or a slow ``clusterlink --version``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "clusterlink"

# package (or top-level module) -> what it may import from clusterlink, besides itself
ALLOWED: dict[str, set[str]] = {
    "ids": set(),
    "errors": set(),
    "kind_names": {"errors"},
    "addresses": set(),
    "log_throttle": set(),
    "logs": set(),
    "memory": set(),
    "file_limit": set(),
    "kube_settings": set(),
    "metrics": set(),
    "flows": set(),
    "peer_dir_lock": {"errors"},
    "policy": {"errors", "ids"},
    "protocol": {"errors", "ids"},
    "api": {"errors", "ids", "kind_names", "policy"},
    "certs": {"errors", "ids", "api", "log_throttle"},
    "kube": {"errors", "ids", "addresses", "api", "policy"},
    "store": {"errors", "ids", "api", "kube"},
    "transport": {"errors", "ids", "addresses", "protocol"},
    "controlplane": {
        "errors",
        "ids",
        "addresses",
        "api",
        "policy",
        "protocol",
        "certs",
        "store",
        "kube",
        "transport",
        "metrics",
        "flows",
        "log_throttle",
        "logs",
    },
    "dataplane": {
        "errors",
        "ids",
        "addresses",
        "api",
        "policy",
        "protocol",
        "certs",
        "transport",
        "controlplane",
        "metrics",
        "flows",
        "log_throttle",
        "logs",
    },
    "client": {"errors", "ids", "addresses", "kind_names", "api", "certs"},
    "manifests": {"errors", "ids", "api", "certs"},
    "dashboard": {"errors", "ids", "addresses", "api", "certs", "client"},
    "cli": {
        "errors",
        "kind_names",
        "ids",
        "addresses",
        "api",
        "certs",
        "client",
        "gateway",
        "manifests",
        "dashboard",
    },
}
# Kubernetes mode's wiring may use what the gateway wires, but not the gateway itself.
ALLOWED["kube_mode"] = {
    name for name in ALLOWED if name not in ("cli", "client", "manifests", "dashboard")
}
# The process that wires it all may use every package but the command line.
ALLOWED["gateway_config"] = {
    "errors",
    "ids",
    "certs",
    "controlplane",
    "dataplane",
    "kube_settings",
    "protocol",
}
ALLOWED["gateway"] = {name for name in ALLOWED if name not in ("cli", "client", "dashboard")} | {
    "logs",
    "memory",
    "file_limit",
    "peer_dir_lock",
}


def _package_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, first component under clusterlink) of every clusterlink import in the file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "clusterlink":
                if len(parts) > 1:
                    found.append((node.lineno, parts[1]))
                else:  # from clusterlink import x: a module, or a name of the package root
                    found.extend((node.lineno, _module_or_root(alias.name)) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "clusterlink" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def _module_or_root(name: str) -> str:
    is_module = (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()
    return name if is_module else "__init__"


def _files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if _package_of(p) in ALLOWED)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_every_import_follows_the_layering(path: Path) -> None:
    package = _package_of(path)
    allowed = ALLOWED[package] | {package, "__init__"}  # the root holds only __version__
    broken = [
        f"{path.relative_to(SRC)}:{line} imports clusterlink.{target}"
        for line, target in _imports(path)
        if target not in allowed
    ]
    assert not broken, f"{package} may import only {sorted(allowed)}: " + "; ".join(broken)


def test_every_package_has_a_rule() -> None:
    """A new package or top-level module must say what it may import, or nothing checks it."""
    exempt = {"__init__", "__main__"}
    unruled = sorted(
        {_package_of(p) for p in SRC.rglob("*.py")} - set(ALLOWED) - exempt,
    )
    assert not unruled, f"add these to ALLOWED: {unruled}"


def test_nothing_imports_the_command_line() -> None:
    importers = [
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if _package_of(path) not in ("cli", "__main__")
        for line, target in _imports(path)
        if target == "cli"
    ]
    assert not importers
