"""Which replica of a peer writes to the cluster: leader election over a coordination Lease.

Every replica of a gateway serves tunnels; only one at a time writes what must not be
written twice: status conditions, the Services of Imports, leased target ports. It is the
holder of the Lease ``clusterlink-gateway`` in ClusterLink's namespace, as with
client-go's leader election:

- a replica takes the Lease when it does not exist, when it holds it already, or when its
  holder has not renewed it for ``duration_s`` (the holder is taken for dead); every write
  carries the Lease's resourceVersion, so of two replicas taking it at once one wins and the
  other's write is refused (409) and it stays a follower;
- the leader renews every ``renew_s``; one that cannot renew for ``duration_s`` minus a
  margin stops leading *before* another replica may take over, so two never lead at once;
- a leader that stops cleanly gives the Lease up (empties the holder), so another takes over
  at its next try instead of after ``duration_s``; one that dies is replaced within
  ``duration_s`` plus one retry.

``decide`` is the pure rule, tested without an API; ``LeaderElector`` is the loop around it.
It never touches anything but the Lease, and reports through two callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from clusterlink.kube.client import CLIENT_ERRORS

__all__ = ["LEASE_NAME", "Decision", "LeaderElector", "LeaseView", "decide", "replica_identity"]

log = logging.getLogger("clusterlink.leader")

LEASE_NAME: Final = "clusterlink-gateway"


class Decision(enum.Enum):
    TAKE = "take"  # the Lease is free or expired: take it (a new holder)
    RENEW = "renew"  # it is ours: renew it
    FOLLOW = "follow"  # someone else holds it and is alive


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What matters of a Lease for the decision."""

    holder: str | None
    renewed_at: datetime | None
    duration_s: float | None


def decide(lease: LeaseView | None, me: str, now: datetime, duration_s: float) -> Decision:
    """Take, renew or follow (see the module docstring)."""
    if lease is None or not lease.holder:
        return Decision.TAKE
    if lease.holder == me:
        return Decision.RENEW
    if lease.renewed_at is None:
        return Decision.TAKE
    valid_for = timedelta(seconds=lease.duration_s or duration_s)
    return Decision.TAKE if now - lease.renewed_at > valid_for else Decision.FOLLOW


def replica_identity() -> str:
    """This replica's name in the Lease: the pod's name (its host name) and the process."""
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    """Keeps trying to lead; ``is_leader`` says whether this replica leads now."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        identity: str,
        duration_s: float = 15.0,
        renew_s: float = 5.0,
        retry_s: float = 2.0,
        on_start: Callable[[], None] = lambda: None,
        on_stop: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0 < renew_s < duration_s:
            raise ValueError("the renew interval must be shorter than the lease duration")
        self._client = client
        self.namespace = namespace
        self.identity = identity
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.retry_s = retry_s
        self._on_start = on_start
        self._on_stop = on_stop
        self._clock = clock
        self.is_leader = False
        self._renewed_at: float | None = None  # loop time of our last successful renewal
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop trying; a leader gives the Lease up so that another takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.is_leader:
            self._lead(False)
            with contextlib.suppress(*CLIENT_ERRORS):
                await self._release()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                leading = await self._try()
            except CLIENT_ERRORS as exc:
                leading = False
                log.debug("lease %s: %s", LEASE_NAME, exc)
            if leading:
                self._renewed_at = loop.time()
                self._lead(True)
            elif self.is_leader:
                # Not renewed: keep leading only while the Lease we wrote last is surely
                # still ours, stepping down a margin before anyone may take it over.
                margin = min(self.retry_s, self.duration_s / 4)
                if self._renewed_at is None or (
                    loop.time() - self._renewed_at > self.duration_s - margin
                ):
                    self._lead(False)
            await asyncio.sleep(self.renew_s if self.is_leader else self.retry_s)

    def _lead(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        if leading:
            log.info("this replica (%s) now leads: it writes status and Services", self.identity)
            self._on_start()
        else:
            log.warning("this replica (%s) no longer leads", self.identity)
            self._on_stop()

    async def _try(self) -> bool:
        """One round: take or renew the Lease if we may; whether we hold it afterwards."""
        now = self._clock()
        try:
            lease = await self._client.get(Lease, LEASE_NAME, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return await self._write(None, now, transitions=0, acquired=now)
        spec = lease.spec or LeaseSpec()
        view = LeaseView(spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds)
        decision = decide(view, self.identity, now, self.duration_s)
        if decision is Decision.FOLLOW:
            return False
        transitions = spec.leaseTransitions or 0
        if decision is Decision.TAKE:
            return await self._write(lease, now, transitions=transitions + 1, acquired=now)
        return await self._write(lease, now, transitions=transitions, acquired=spec.acquireTime)

    async def _write(
        self, lease: Lease | None, now: datetime, *, transitions: int, acquired: datetime | None
    ) -> bool:
        spec = LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.duration_s),
            acquireTime=acquired,
            renewTime=now,
            leaseTransitions=transitions,
        )
        try:
            if lease is None:
                metadata = ObjectMeta(name=LEASE_NAME, namespace=self.namespace)
                await self._client.create(Lease(metadata=metadata, spec=spec))
            else:
                assert lease.metadata is not None
                metadata = ObjectMeta(
                    name=LEASE_NAME,
                    namespace=self.namespace,
                    resourceVersion=lease.metadata.resourceVersion,
                )
                await self._client.replace(Lease(metadata=metadata, spec=spec))
        except ApiError as exc:
            if exc.status.code == 409:  # another replica wrote first
                return False
            raise
        return True

    async def _release(self) -> None:
        lease = await self._client.get(Lease, LEASE_NAME, namespace=self.namespace)
        spec = lease.spec or LeaseSpec()
        if spec.holderIdentity != self.identity or lease.metadata is None:
            return
        released = LeaseSpec(
            holderIdentity=None,
            leaseDurationSeconds=spec.leaseDurationSeconds,
            acquireTime=spec.acquireTime,
            renewTime=spec.renewTime,
            leaseTransitions=spec.leaseTransitions,
        )
        metadata = ObjectMeta(
            name=LEASE_NAME,
            namespace=self.namespace,
            resourceVersion=lease.metadata.resourceVersion,
        )
        await self._client.replace(Lease(metadata=metadata, spec=released))
        log.info("this replica (%s) gave up the lease", self.identity)
