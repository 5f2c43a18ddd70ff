"""Sites in Kubernetes mode for end-to-end tests: an emulated cluster each, real gateways.

A ``KubeSite`` is one cluster: its own emulated API (``KubeAPI``, with ClusterLink's CRDs
installed and their schemas enforced), and one or more replicas of its peer's gateway, each a
real ``clusterlink gateway run --kubernetes`` process talking to that API over HTTP. What a
cluster would do for us is done here, by the test, the way it happens there:

- ``kubectl apply`` is ``apply``: create, or patch the spec and labels of what exists;
- a Pod is an object whose ``status.podIP`` is a loopback address of its own (127.x.y.z):
  a client connects *from* that address (``Client``), so the gateway sees the Pod's IP and
  its attributes are exercised for real;
- a Service of an exported workload is an object whose ``spec.clusterIP`` is a loopback
  address where a real server (``NamedServer``) listens;
- kube-proxy is the choice of a live replica: a client of an Import connects to one of the
  replicas that run (in turn), at the replica's import host and the Import's leased
  ``targetPort``, as a Service would send it there.

Every replica has its own import host (127.<site>.0.<replica>) and its own copy of the peer
directory (same certificate; its own gateway.json), so that replicas of one site can run on one
machine as they would in separate pods.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from clusterlink.api.crds import crds
from tests.integration.gateways import Fabric, Gateway
from tests.integration.waiting import wait_until
from tests.k8s.apirules import StatusError
from tests.k8s.apiserver import KubeAPI

__all__ = [
    "NS",
    "Client",
    "KubeSite",
    "NamedServer",
    "allow_all",
    "export",
    "import_",
    "policy",
]

NS = "clusterlink-system"
API_VERSION = "clusterlink.net/v1alpha1"
GROUP_PATH = "clusterlink.net/v1alpha1"
# Fast heartbeats and a short lease: what the tests wait for happens within seconds.
FAST = (
    "--heartbeat-interval",
    "0.2",
    "--unreachable-after",
    "3",
    "--reachable-after",
    "1",
    "--lease-duration",
    "2",
)
TIMEOUT_S = 15.0

Obj = dict[str, Any]
_site_numbers = itertools.count(20)


def _document(kind: str, name: str, namespace: str | None, spec: Obj, **meta: Any) -> Obj:
    metadata: Obj = {"name": name, **meta}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def export(name: str, namespace: str, *, host: str | None = None, port: int = 0) -> Obj:
    spec: Obj = {}
    if host is not None:
        spec["host"] = host
    if port:
        spec["port"] = port
    return _document("Export", name, namespace, spec)


def import_(
    name: str,
    namespace: str,
    sources: Sequence[tuple[str, str, str]],
    *,
    port: int = 80,
    target_port: int | None = None,
    lb: str | None = None,
) -> Obj:
    spec: Obj = {
        "port": port,
        "sources": [
            {"peer": peer, "exportName": export_name, "exportNamespace": export_ns}
            for peer, export_name, export_ns in sources
        ],
    }
    if target_port is not None:
        spec["targetPort"] = target_port
    if lb is not None:
        spec["lbScheme"] = lb
    return _document("Import", name, namespace, spec)


def selector(labels: Mapping[str, str] | None = None, expressions: Sequence[Obj] = ()) -> Obj:
    workload: Obj = {}
    if labels:
        workload["matchLabels"] = dict(labels)
    if expressions:
        workload["matchExpressions"] = list(expressions)
    return {"workloadSelector": workload}


def policy(
    name: str,
    namespace: str | None,
    action: str,
    *,
    from_: Sequence[Obj] = (),
    to: Sequence[Obj] = (),
    privileged: bool = False,
) -> Obj:
    kind = "PrivilegedAccessPolicy" if privileged else "AccessPolicy"
    spec = {"action": action, "from": list(from_) or [selector()], "to": list(to) or [selector()]}
    return _document(kind, name, None if privileged else namespace, spec)


def allow_all(namespace: str) -> Obj:
    return policy("allow-all", namespace, "allow")


class NamedServer:
    """A workload that answers every connection with its name and a newline, then echoes.

    Bound to an address of its own, so that a Service's cluster IP can point at it."""

    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self._sock = socket.create_server((host, 0))
        self.host, self.port = host, int(self._sock.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(f"{self.name}\n".encode())
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._sock.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """What a client got: the server's name (``""`` for none) and how the connection ended."""

    name: str
    end: str  # "eof" | "reset" | "refused" | "timeout"


class Client:
    """A client in a Pod: it connects from the Pod's own address."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        self.ip = ip

    def ask(self, address: tuple[str, int], *, timeout_s: float = 5.0) -> Answer:
        """Connect, read the name the server sends, close; how it went."""
        with socket.socket() as sock:
            sock.settimeout(timeout_s)
            sock.bind((self.ip, 0))
            try:
                sock.connect(address)
            except ConnectionRefusedError:
                return Answer("", "refused")
            received = bytearray()
            try:
                while b"\n" not in received:
                    chunk = sock.recv(1024)
                    if not chunk:
                        return Answer(received.decode(errors="replace"), "eof")
                    received += chunk
            except ConnectionResetError:
                return Answer(received.decode(errors="replace"), "reset")
            except TimeoutError:
                return Answer(received.decode(errors="replace"), "timeout")
            return Answer(received.decode().strip(), "eof")


@dataclass
class KubeSite:
    """One cluster: an emulated API and the replicas of one peer's gateway."""

    name: str
    fabric: Fabric
    root: Path
    replicas: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    number: int = field(default_factory=lambda: next(_site_numbers))
    api: KubeAPI = field(init=False)
    gateways: list[Gateway | None] = field(init=False, default_factory=list)
    _next_replica: Iterator[int] = field(init=False)
    _servers: list[NamedServer] = field(init=False, default_factory=list)
    _listen: list[tuple[str, int]] = field(init=False, default_factory=list)
    _addresses: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(100))

    def __post_init__(self) -> None:
        self.api = KubeAPI(crds=crds(), namespaces=("default", "kube-system", NS)).start()
        self._next_replica = itertools.cycle(range(self.replicas))
        try:
            self.gateways = [self._start(i) for i in range(self.replicas)]
        except BaseException:
            self.close()
            raise
        self._listen = [self.gateway(i).listen for i in range(self.replicas)]

    # -- replicas ---------------------------------------------------------------------------

    def import_host(self, replica: int) -> str:
        return f"127.{self.number}.0.{replica + 1}"

    def _start(self, replica: int, *, listen: str = "127.0.0.1:0") -> Gateway:
        source = self.fabric.peer_dir(self.name)
        copy = self.root / f"{self.name}-replica-{replica}" / self.name
        if not copy.exists():
            copy.mkdir(parents=True)
            for item in ("cert.pem", "key.pem", "ca.pem", "admin"):
                if (source / item).is_dir():
                    shutil.copytree(source / item, copy / item)
                else:
                    shutil.copy2(source / item, copy / item)
        labels = [
            arg for key, value in self.labels.items() for arg in ("--label", f"{key}={value}")
        ]
        args = (
            "--kubernetes",
            "--kube-api",
            self.api.url,
            "--namespace",
            NS,
            "--import-host",
            self.import_host(replica),
            *FAST,
            *labels,
            *self.extra_args,
        )
        runs = len(list(self.root.glob(f"{self.name}-{replica}-*.log")))
        log_path = self.root / f"{self.name}-{replica}-{runs + 1}.log"
        return Gateway(copy, log_path=log_path, extra_args=args, listen=listen)

    def gateway(self, replica: int = 0) -> Gateway:
        gateway = self.gateways[replica]
        assert gateway is not None, f"replica {replica} of {self.name} is not running"
        return gateway

    def kill(self, replica: int) -> None:
        """SIGKILL: a pod that dies, without giving anything up."""
        gateway = self.gateway(replica)
        gateway.kill()
        self.gateways[replica] = None

    def restart(self, replica: int) -> None:
        """Start the replica again (stopping it first if it runs) at the same peer address, as
        a pod behind the same Service would be reached."""
        host, port = self._listen[replica]
        if self.gateways[replica] is not None:
            self.gateway(replica).stop()
        self.gateways[replica] = self._start(replica, listen=f"{host}:{port}")

    def live_replicas(self) -> list[int]:
        return [i for i, gateway in enumerate(self.gateways) if gateway is not None]

    def leader(self) -> str | None:
        try:
            lease = self.api.get("leases", "clusterlink-gateway", namespace=NS)
        except StatusError:
            return None
        holder: str | None = (lease.get("spec") or {}).get("holderIdentity")
        return holder

    def replica_of(self, identity: str) -> int:
        """Which replica holds ``identity`` (the Lease names it by host and pid)."""
        for index, gateway in enumerate(self.gateways):
            if gateway is not None and identity.endswith(f"-{gateway.process.pid}"):
                return index
        raise AssertionError(f"no running replica of {self.name} is {identity}")

    # -- as others see it -----------------------------------------------------------------------

    def as_peer(self, *, gateways: Sequence[tuple[str, int]] | None = None) -> Obj:
        """The Peer others create for this site: every replica's address, or ``gateways``."""
        which = self._listen if gateways is None else gateways
        listed = [{"host": host, "port": port} for host, port in which]
        return _document("Peer", self.name, NS, {"gateways": listed})

    def peer_address(self, replica: int = 0) -> tuple[str, int]:
        return self._listen[replica]

    # -- kubectl --------------------------------------------------------------------------------

    def apply(self, *documents: Obj) -> None:
        """``kubectl apply``: create each, or update the spec and labels of what exists."""
        for document in documents:
            kind = document["kind"]
            meta = document["metadata"]
            try:
                self.api.create(kind, document, namespace=meta.get("namespace"))
            except StatusError as exc:
                if exc.status != 409:
                    raise
                patch: Obj = {"spec": document["spec"]}
                if "labels" in meta:
                    patch["metadata"] = {"labels": meta["labels"]}
                self.api.patch(kind, meta["name"], patch, namespace=meta.get("namespace"))

    def apply_and_wait(self, *documents: Obj) -> None:
        """``apply``, then wait until every running replica serves what was applied (its
        view of each resource's spec is the API's): a test must not race the watch."""
        self.apply(*documents)
        for document in documents:
            for replica in self.live_replicas():
                wait_until(
                    partial(_serves, self.gateway(replica), document),
                    what=f"replica {replica} of {self.name} serves {document['metadata']}",
                )

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        self.api.delete(kind, name, namespace=namespace)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.api.get(kind, name, namespace=namespace)
        except StatusError as exc:
            if exc.status == 404:
                return None
            raise

    def condition(self, kind: str, name: str, namespace: str | None, type_: str) -> Obj | None:
        obj = self.get(kind, name, namespace)
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == type_), None)

    def wait_condition(
        self, kind: str, name: str, namespace: str | None, type_: str, status: bool
    ) -> Obj:
        wanted = "True" if status else "False"

        def probe() -> Obj | None:
            found = self.condition(kind, name, namespace, type_)
            return found if found is not None and found.get("status") == wanted else None

        return wait_until(
            probe,
            what=f"{kind} {namespace}/{name} has {type_}={wanted} at {self.name}",
            timeout_s=TIMEOUT_S,
            describe=lambda _: str(self.get(kind, name, namespace)),
        )

    def wait_gone(self, kind: str, name: str, namespace: str | None) -> None:
        wait_until(
            lambda: self.get(kind, name, namespace) is None,
            what=f"{kind} {namespace}/{name} is deleted at {self.name}",
            timeout_s=TIMEOUT_S,
        )

    # -- workloads ------------------------------------------------------------------------------

    def new_address(self) -> str:
        """A loopback address of this site's own, for a Pod or a Service."""
        return f"127.{self.number}.1.{next(self._addresses)}"

    def serve(self, name: str, namespace: str, *, service: bool = True) -> NamedServer:
        """A workload that answers with this site's name; with its Service if ``service``."""
        server = NamedServer(self.name, self.new_address())
        self._servers.append(server)
        if service:
            self.api.create(
                "services",
                {
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"clusterIP": server.host, "ports": [{"port": server.port}]},
                },
            )
        return server

    def pod(
        self,
        name: str,
        namespace: str,
        *,
        service_account: str = "default",
        labels: Mapping[str, str] | None = None,
    ) -> Client:
        """A running Pod with an address of its own; the Client connects from it."""
        ip = self.new_address()
        self.api.create(
            "pods",
            {
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
                "spec": {
                    "containers": [{"name": "c", "image": "x"}],
                    "serviceAccountName": service_account,
                },
            },
        )
        self.api.patch(
            "pods",
            name,
            {"status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running"}},
            namespace=namespace,
            subresource="status",
        )
        return Client(ip)

    def import_address(
        self, name: str, namespace: str, replica: int | None = None
    ) -> tuple[str, int]:
        """Where a client of the Import's Service lands: a live replica (in turn), at the
        Import's leased target port, once that replica listens there."""
        index = replica if replica is not None else self._pick_replica()
        host = self.import_host(index)

        gateway = self.gateway(index)

        def target_port() -> int | None:
            obj = self.get("imports", name, namespace) or {}
            port = (obj.get("spec") or {}).get("targetPort")
            if not port:
                return None
            done = gateway.cl("get", "import", name, "-n", namespace, "-o", "json")
            listen = ((done.json() if done.rc == 0 else {}).get("status") or {}).get("listen")
            return port if listen == f"{host}:{port}" else None

        port = wait_until(
            target_port,
            what=f"import {namespace}/{name} is served by replica {index} of {self.name}",
            timeout_s=TIMEOUT_S,
        )
        return host, port

    def _pick_replica(self) -> int:
        for _ in range(self.replicas):
            index = next(self._next_replica)
            if self.gateways[index] is not None:
                return index
        raise AssertionError(f"no replica of {self.name} is running")

    def close(self) -> None:
        for gateway in self.gateways:
            if gateway is not None:
                gateway.kill()
        for server in self._servers:
            server.close()
        self.api.close()


def _serves(gateway: Gateway, document: Obj) -> bool:
    meta = document["metadata"]
    kind = document["kind"].lower()
    where = ("-n", meta["namespace"]) if kind != "peer" and "namespace" in meta else ()
    done = gateway.cl("get", kind, meta["name"], *where, "-o", "json")
    return done.rc == 0 and _same(done.json()["spec"], document["spec"])


def _same(served: Obj, applied: Obj) -> bool:
    """Whether the gateway's spec says what was applied (it adds defaults: compare only
    the fields that were given)."""
    return all(served.get(key) == value for key, value in applied.items())
