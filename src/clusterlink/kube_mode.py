"""What a gateway does differently in Kubernetes mode (``gateway run --kubernetes``).

The gateway is the same; these are the places where the cluster stands in for what a
standalone gateway does itself (DESIGN §9, docs/kubernetes.md):

- the store is the Kubernetes API (``KubernetesStore``), which changes under the gateway:
  every change re-syncs the resources (``ResourceService.sync``: the catalog, the import
  listeners) and pokes the leader's controller;
- an Import listens on its ``targetPort`` only (``port`` is its Service's), once leased;
- an Export without ``host`` is its Service: dialled at the Service's cluster IP, on the
  Export's ``port`` or else the Service's first port of the Export's protocol;
- a client is who the Pod at its address is (namespace, service account, labels);
- one replica at a time leads (``kube.leader``) and writes statuses, Services and leased
  ports (``controlplane.kube_controller``).

Wired by ``gateway`` and nothing else; nothing here serves connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from clusterlink.addresses import Address
from clusterlink.api import Export, Import
from clusterlink.controlplane.health import PeerHealth
from clusterlink.controlplane.kube_controller import KubeController
from clusterlink.controlplane.resources import ResourceService
from clusterlink.errors import ClusterLinkError, NotFoundError
from clusterlink.kube.client import load_access
from clusterlink.kube.leader import LeaderElector, replica_identity
from clusterlink.kube.pods import identity_of
from clusterlink.kube_settings import KubernetesSettings
from clusterlink.policy import ClientIdentity
from clusterlink.store.kubernetes import KubernetesStore

__all__ = ["KubernetesMode", "KubernetesSettings"]

log = logging.getLogger("clusterlink.kube")

_RETRY_S: Final = 5.0


class KubernetesMode:
    """The Kubernetes side of one gateway: its store, its hooks, its leader's controller."""

    def __init__(self, settings: KubernetesSettings) -> None:
        self.settings = settings
        self.access = load_access(api_url=settings.api_url, kubeconfig=settings.kubeconfig)
        self.store = KubernetesStore(self.access, namespace=settings.namespace)
        self.identity = replica_identity()
        self._client = self.access.async_client()
        self.controller: KubeController | None = None
        self.elector: LeaderElector | None = None
        self._resources: ResourceService | None = None
        self._syncing: asyncio.Task[None] | None = None
        self._resync = False
        self._retrying: asyncio.Task[None] | None = None

    async def open_store(self) -> KubernetesStore:
        await self.store.start()
        log.info(
            "store: the Kubernetes API at %s (%s), ClusterLink's namespace %s",
            self.access.server,
            self.access.source,
            self.settings.namespace,
        )
        return self.store

    # -- the hooks of the data plane ----------------------------------------------------------

    @staticmethod
    def port_of(imp: Import) -> int:
        return imp.spec.target_port

    def locate(self, export: Export) -> Address:
        """Where an Export's service is: its host, or its Service's cluster IP."""
        key = export.metadata.key
        if export.spec.host:
            if not export.spec.port:
                raise ClusterLinkError(f"export {key} has a host but no port")
            return export.spec.host, export.spec.port
        service = self.store.service(key.namespace, key.name)
        if service is None or service.spec is None:
            raise NotFoundError(f"export {key}: service {key} does not exist")
        ip = service.spec.clusterIP
        if not ip or ip == "None":
            raise ClusterLinkError(f"export {key}: service {key} has no cluster IP")
        protocol = export.spec.protocol  # the first port of the Export's protocol
        ports = [p.port for p in service.spec.ports or [] if (p.protocol or "TCP") == protocol]
        port = export.spec.port or next(iter(ports), 0)
        if not port:
            raise ClusterLinkError(f"export {key}: service {key} has no {protocol} port")
        return ip, port

    def identify(self, ip: str) -> ClientIdentity | None:
        pod = self.store.pod_by_ip(ip)
        found = None if pod is None else identity_of(pod)
        return None if found is None else found[1]

    # -- running ------------------------------------------------------------------------------

    async def start(
        self, *, resources: ResourceService, health: PeerHealth, own_ports: frozenset[int]
    ) -> None:
        """Follow the store and take part in the leader election. ``own_ports``: the ones this
        gateway (every replica, as they run with the same flags) listens on itself."""
        self._resources = resources
        settings = self.settings
        self.controller = controller = KubeController(
            store=self.store,
            client=self._client,
            health=health,
            is_leader=lambda: self.elector is not None and self.elector.is_leader,
            reserved_ports=own_ports,
        )
        self.elector = LeaderElector(
            self._client,
            namespace=settings.namespace,
            identity=self.identity,
            duration_s=settings.lease_duration_s,
            renew_s=settings.lease_renew_s,
            retry_s=settings.lease_retry_s,
            on_start=controller.poke,
        )
        self.store.on_change = lambda _kinds: self.changed()
        controller.start()
        self.elector.start()
        self._retrying = asyncio.create_task(self._retry_unserved())

    def changed(self) -> None:
        """The store changed: sync the resources (one run at a time, coalesced) and let the
        leader look."""
        if self.controller is not None:
            self.controller.poke()
        if self._syncing is not None and not self._syncing.done():
            self._resync = True
            return
        self._syncing = asyncio.create_task(self._sync())

    def peer_changed(self) -> None:
        """A peer's reachability changed: the leader writes it into the Peer's status."""
        if self.controller is not None:
            self.controller.poke()

    async def _retry_unserved(self) -> None:
        """An Import whose port could not be bound (taken on this host for a moment) is tried
        again every ``_RETRY_S`` until it is served; nothing else would try it again."""
        assert self._resources is not None
        while True:
            await asyncio.sleep(_RETRY_S)
            if any(not why.startswith("waiting") for why in self._resources.unserved.values()):
                self.changed()

    async def _sync(self) -> None:
        assert self._resources is not None
        while True:
            self._resync = False
            try:
                await self._resources.sync()
            except ClusterLinkError as exc:
                log.error("cannot follow the change of resources: %s", exc)
            if not self._resync:
                return

    async def close(self) -> None:
        self.store.on_change = None
        if self._retrying is not None:
            self._retrying.cancel()
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing
        if self.elector is not None:
            await self.elector.close()
        if self.controller is not None:
            await self.controller.close()
        await self.store.aclose()
        await self._client.close()
