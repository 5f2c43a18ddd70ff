"""The gateway's state: the ``Store`` contract and its default SQLite implementation.

The control plane depends on ``Store`` (a Protocol) only; ``SQLiteStore`` is what
``gateway run`` opens at ``--state``. A Kubernetes-backed store will implement the same contract.
"""

from clusterlink.store.base import ApplyOutcome, ApplyResult, Store
from clusterlink.store.sqlite import SQLiteStore

__all__ = ["ApplyOutcome", "ApplyResult", "SQLiteStore", "Store"]
