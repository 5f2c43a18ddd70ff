"""The gateway's state: the ``Store`` contract and its implementations.

The control plane depends on ``Store`` (a Protocol) only. ``SQLiteStore`` is what ``gateway
run`` opens at ``--state``; ``KubernetesStore`` is Kubernetes mode's (the API as the store). It
is imported on first use, so that commands that never touch Kubernetes do not pay for the
client library.
"""

from typing import TYPE_CHECKING, Any

from clusterlink.store.base import ApplyOutcome, ApplyResult, Store
from clusterlink.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from clusterlink.store.kubernetes import KubernetesStore

__all__ = ["ApplyOutcome", "ApplyResult", "KubernetesStore", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    if name == "KubernetesStore":
        from clusterlink.store.kubernetes import KubernetesStore

        return KubernetesStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
