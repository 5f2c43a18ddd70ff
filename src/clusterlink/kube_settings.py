"""``gateway run --kubernetes`` and the flags that go with it, apart from ``kube_mode`` so
that a standalone gateway's configuration names them without importing the Kubernetes client
(a gateway's start-up time is mostly imports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["KubernetesSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesSettings:
    """``gateway run --kubernetes`` and the flags that go with it."""

    namespace: str = "clusterlink-system"
    api_url: str | None = None  # --kube-api: plain HTTP(S), no credentials
    kubeconfig: Path | None = None
    lease_duration_s: float = 15.0
    lease_renew_s: float = 5.0
    lease_retry_s: float = 2.0
