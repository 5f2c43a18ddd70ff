"""What the leading replica writes to the cluster in Kubernetes mode.

Every replica serves tunnels from the same resources; only the leader (``kube.leader``)
writes, so that nothing is written twice or fought over:

1. Target ports: an Import without ``spec.targetPort`` gets one leased (``target_ports``) and
   written back into its spec, so that every replica listens on it; two Imports naming the
   same port are a conflict, and the later one gets none.
2. Services (``import_services``): for every Import with its port, the ClusterIP Service
   (and the ExternalName one for an Import of another namespace), created or brought back
   to what they should be; a Service of the same name that is not ours is left alone and is
   the Import's error; a managed Service whose Import is gone is deleted; one deleted by
   someone else is created again.
3. Conditions (``conditions``): ``ImportTargetPortValid``, ``ImportServiceValid`` and
   ``ImportSourcesValid`` on Imports, ``ExportValid`` on Exports (an Export without ``host``
   needs its Service), ``PeerReachable`` with the peer's labels on Peers. A status is written
   only when it says something new: a reconcile that finds everything as it was writes
   nothing.

When: after every change the store reports (ours, or a Service), after a reachability
change, when this replica starts to lead, and every ``resync_s`` as a safety net. Runs are
serialized and coalesced: changes that arrive during a run make one more run, not many.

Never: write while not leading (a replica that stops leading mid-run finishes no further
write), touch a Service it does not own, or decide anything about tunnels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Service

from clusterlink.api import Export, Import, Peer, ResourceKey, key_of
from clusterlink.controlplane.conditions import (
    EXPORT_VALID,
    IMPORT_SERVICE_VALID,
    IMPORT_TARGET_PORT_VALID,
    condition,
    set_condition,
)
from clusterlink.controlplane.health import PeerHealth
from clusterlink.controlplane.import_conditions import SOURCES_VALID, judge_sources
from clusterlink.controlplane.import_services import (
    DesiredService,
    desired_services,
    import_of_service,
    ownership,
)
from clusterlink.controlplane.target_ports import PortConflict, TargetPorts
from clusterlink.errors import ClusterLinkError
from clusterlink.ids import NamespacedName, PeerName
from clusterlink.kube.client import CLIENT_ERRORS
from clusterlink.store.kubernetes import KubernetesStore

__all__ = ["KubeController"]

log = logging.getLogger("clusterlink.kube")

_RESYNC_S: Final = 30.0


class KubeController:
    """The leader's reconcile loop (see the module docstring)."""

    def __init__(
        self,
        *,
        store: KubernetesStore,
        client: AsyncClient,
        health: PeerHealth,
        is_leader: Callable[[], bool],
        reserved_ports: frozenset[int] = frozenset(),
        resync_s: float = _RESYNC_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.namespace = store.namespace
        self.client = client
        self.health = health
        self.is_leader = is_leader
        self.resync_s = resync_s
        self._clock = clock
        self.ports = TargetPorts(reserved=reserved_ports)
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._errors: dict[str, str] = {}  # what was logged last per thing, to log a change once

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self.poke()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Something changed: reconcile soon (coalesced with other pokes)."""
        self._wanted.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self.resync_s)
            self._wanted.clear()
            if not self.is_leader():
                continue
            try:
                await self.reconcile()
            except (ClusterLinkError, *CLIENT_ERRORS) as exc:
                self._say("reconcile", f"reconcile failed, retrying soon: {exc}")
                await asyncio.sleep(1.0)
                self._wanted.set()

    # -- one pass -----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        imports = [r for r in self.store.list("Import") if isinstance(r, Import)]
        ports = self._lease_ports(imports)
        wanted_services: dict[NamespacedName, DesiredService] = {}
        for imp in imports:
            if not self.is_leader():
                return
            key = imp.metadata.key
            port = ports[key]
            if isinstance(port, int) and port != imp.spec.target_port:
                await self._write_target_port(imp, port)
                continue  # its change comes back through the watch, and with it the rest
            service_problem = None
            if isinstance(port, int):
                desired = desired_services(imp, self.namespace)
                for service in desired:
                    wanted_services[service.key] = service
                service_problem = await self._ensure_services(desired)
            await self._write_import_status(imp, port, service_problem)
        await self._delete_orphans(wanted_services)
        for export in self.store.list("Export"):
            if isinstance(export, Export) and self.is_leader():
                await self._write_export_status(export)
        for peer in self.store.list("Peer"):
            if isinstance(peer, Peer) and self.is_leader():
                await self._write_peer_status(peer)

    # -- target ports -------------------------------------------------------------------------

    def _lease_ports(self, imports: list[Import]) -> dict[NamespacedName, int | PortConflict]:
        """Every Import's port: those that name one first (in name order, so the outcome does
        not depend on the order the API listed them), then those to lease one."""
        keys = {imp.metadata.key for imp in imports}
        for held in [k for k in self.ports.holders() if k not in keys]:
            self.ports.release(held)
        result: dict[NamespacedName, int | PortConflict] = {}
        for imp in sorted(imports, key=lambda i: (i.spec.target_port == 0, i.metadata.key)):
            result[imp.metadata.key] = self.ports.lease(imp.metadata.key, imp.spec.target_port)
        return result

    async def _write_target_port(self, imp: Import, port: int) -> None:
        spec = imp.spec.model_copy(update={"target_port": port})
        leased = imp.model_copy(update={"spec": spec})
        await asyncio.to_thread(self.store.apply, [leased])
        log.info("import %s: leased target port %d", imp.metadata.key, port)

    # -- Services -----------------------------------------------------------------------------

    async def _ensure_services(self, desired: list[DesiredService]) -> str | None:
        """Create or correct the Import's Services; the problem in words, if one is not ours."""
        for wanted in desired:
            existing = self.store.service(wanted.key.namespace, wanted.key.name)
            found = None if existing is None else existing.to_dict()
            state = ownership(found, wanted)
            if state == "foreign":
                return (
                    f"service {wanted.key} already exists and is not managed by ClusterLink; "
                    "delete or rename it, or rename the Import"
                )
            if state == "missing":
                await self._call(
                    f"create service {wanted.key}",
                    self.client.create(from_dict(dict(wanted.manifest))),
                )
                log.info("service %s created", wanted.key)
            elif found is not None and _differs(found, wanted.manifest):
                patch = {"spec": wanted.manifest["spec"], "metadata": {"labels": _labels(wanted)}}
                await self._call(
                    f"update service {wanted.key}",
                    self.client.patch(
                        Service, wanted.key.name, patch, namespace=wanted.key.namespace
                    ),
                )
                log.info("service %s brought back to what import needs", wanted.key)
        return None

    async def _delete_orphans(self, wanted: Mapping[NamespacedName, DesiredService]) -> None:
        for service in self.store.services():
            manifest = service.to_dict()
            if import_of_service(manifest) is None:
                continue
            meta = manifest.get("metadata") or {}
            key = NamespacedName(meta.get("namespace", ""), meta.get("name", ""))
            if key in wanted or not self.is_leader():
                continue
            await self._call(
                f"delete service {key}",
                self.client.delete(Service, key.name, namespace=key.namespace),
                missing_ok=True,
            )
            log.info("service %s deleted: its import is gone", key)

    # -- statuses -----------------------------------------------------------------------------

    async def _write_import_status(
        self, imp: Import, port: int | PortConflict, service_problem: str | None
    ) -> None:
        now = self._clock()
        current = [
            c.model_dump(by_alias=True) for c in (imp.status.conditions if imp.status else [])
        ]
        if isinstance(port, PortConflict):
            port_condition = condition(IMPORT_TARGET_PORT_VALID, False, "Error", str(port), now=now)
            service_condition = condition(
                IMPORT_SERVICE_VALID, False, "Error", f"no target port: {port}", now=now
            )
        else:
            port_condition = condition(IMPORT_TARGET_PORT_VALID, True, "Leased", now=now)
            service_condition = (
                condition(IMPORT_SERVICE_VALID, False, "Error", service_problem, now=now)
                if service_problem
                else condition(IMPORT_SERVICE_VALID, True, "Valid", now=now)
            )
        judged = judge_sources(imp, {p.metadata.name for p in self.store.list("Peer")})
        sources_condition = condition(
            SOURCES_VALID, judged.status == "True", judged.reason, judged.message, now=now
        )
        changed_any = False
        for new in (port_condition, service_condition, sources_condition):
            current, changed = set_condition(current, new)
            changed_any = changed_any or changed
        if changed_any:
            await self._status(key_of(imp), {"conditions": current})

    async def _write_export_status(self, export: Export) -> None:
        now = self._clock()
        key = export.metadata.key
        current = [
            c.model_dump(by_alias=True) for c in (export.status.conditions if export.status else [])
        ]
        if export.spec.host or self.store.service(key.namespace, key.name) is not None:
            new = condition(EXPORT_VALID, True, "Verified", now=now)
        else:
            new = condition(
                EXPORT_VALID,
                False,
                "Error",
                f"service {key} does not exist; create it, or give the Export a host",
                now=now,
            )
        conditions, changed = set_condition(current, new)
        if changed:
            await self._status(key_of(export), {"conditions": conditions})

    async def _write_peer_status(self, peer: Peer) -> None:
        state = self.health.states.get(PeerName(peer.metadata.name))
        if state is None:
            return
        live = state.condition()
        current = [
            c.model_dump(by_alias=True) for c in (peer.status.conditions if peer.status else [])
        ]
        conditions, changed = set_condition(current, {**live})
        written = peer.status
        labels_changed = written is None or written.labels != state.labels
        flags_changed = written is None or (
            written.reachable != state.reachability.reachable or written.peered != state.peered
        )
        if not (changed or labels_changed or flags_changed):
            return
        status = {
            "conditions": conditions,
            "reachable": state.reachability.reachable,
            "peered": state.peered,
            "reason": state.reason,
            "labels": dict(state.labels),
        }
        await self._status(key_of(peer), status)

    async def _status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        if not self.is_leader():
            return
        try:
            await asyncio.to_thread(self.store.set_status, key, status)
        except ClusterLinkError as exc:
            self._say(str(key), f"cannot write the status of {key}: {exc}")

    # -- plumbing -----------------------------------------------------------------------------

    async def _call(self, doing: str, call: Any, *, missing_ok: bool = False) -> None:
        try:
            await call
        except ApiError as exc:
            if missing_ok and exc.status.code == 404:
                return
            if exc.status.code == 409:  # raced with another writer: the next pass sees it
                self.poke()
                return
            self._say(doing, f"cannot {doing}: {exc.status.message or exc}")
        except CLIENT_ERRORS as exc:
            self._say(doing, f"cannot {doing}: {exc}")

    def _say(self, about: str, message: str) -> None:
        """Log a problem once, again only when it changes."""
        if self._errors.get(about) != message:
            self._errors[about] = message
            log.warning("%s", message)


def _labels(wanted: DesiredService) -> dict[str, str]:
    labels: dict[str, str] = dict(wanted.manifest["metadata"]["labels"])
    return labels


def _differs(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a Service of ours lost what it needs (the API adds fields of its own, such as
    the cluster IP, which are not a difference)."""
    have, need = found.get("spec") or {}, wanted["spec"]
    if have.get("type") != need["type"]:
        return True
    if need["type"] == "ExternalName":
        return bool(have.get("externalName") != need["externalName"])
    if have.get("selector") != need["selector"]:
        return True
    ports = [
        (p.get("port"), p.get("targetPort"), p.get("protocol", "TCP"))
        for p in have.get("ports") or []
    ]
    return ports != [(p["port"], p["targetPort"], p["protocol"]) for p in need["ports"]]
