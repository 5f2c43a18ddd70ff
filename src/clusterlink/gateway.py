"""Wires the parts of one gateway into one process (DESIGN §2).

Work in progress: the configuration below is the contract between the CLI's
``gateway run`` and the gateway process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GatewayConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """Everything ``clusterlink gateway run`` can set; defaults follow DESIGN §6."""

    peer_dir: Path
    listen: str = "0.0.0.0:8443"
    admin_listen: str = "127.0.0.1:8444"
    import_host: str = "127.0.0.1"
    metrics_listen: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    state_path: Path | None = None  # default: peer_dir / "state.db"
    log_level: str = "info"
    log_format: str = "text"  # text | json
