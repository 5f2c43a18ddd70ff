"""Everything one cluster needs to run one peer's gateway, as Kubernetes objects.

In the order ``kubectl apply`` must meet them: the Namespace, the five CRDs, the
ServiceAccount and its RBAC (``rbac``), the Secret with the peer's credentials, the
Deployment of the gateway, and the Service that other peers connect to.

Decisions, and why:

- The Secret holds ``cert.pem``, ``key.pem`` and ``ca.pem`` under the names the gateway
  reads in a peer directory, and is mounted read-only as that directory. The admin
  certificate and key stay out of the cluster: in Kubernetes mode resources are managed with
  kubectl, and the admin key would let whoever can read the Secret drive the admin API. A
  mounted Secret follows ``kubectl apply`` of new credentials within a minute, and the
  gateway's reloader picks new files up by content, so a certificate rotates without a
  restart.
- Kubernetes mode therefore writes nothing into its peer directory (no ``gateway.lock``,
  ``gateway.json`` or ``state.db``: the store is the API, the Lease elects the writer); the
  root filesystem is read-only too, and ``/tmp`` is the one writable place, an emptyDir.
- Probes are HTTP ``GET /metrics`` on ``--metrics-listen``: an answer needs the event loop,
  where a TCP probe of the peer port would pass on the kernel's backlog alone, and every
  probe would be a failed mutual-TLS handshake in the gateway's log and counters.
- Import listeners bind ``0.0.0.0``: the Services of Imports reach them at the pod's address.
- The pods carry ``app.kubernetes.io/name: clusterlink``, the one label the Services of
  Imports (written by the gateway) and the peer Service select.
- Runs as UID/GID 10001, the user of the Containerfile's image, with every capability
  dropped: the ports are unprivileged, and the Secret's files are 0440, readable through
  ``fsGroup``.

Pure: objects in, objects out; the command line reads the files and writes the YAML.
"""

from __future__ import annotations

import base64
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Capabilities,
    Container,
    ContainerPort,
    EmptyDirVolumeSource,
    HTTPGetAction,
    PodSecurityContext,
    PodSpec,
    PodTemplateSpec,
    Probe,
    ResourceRequirements,
    SeccompProfile,
    SecretVolumeSource,
    SecurityContext,
    ServicePort,
    ServiceSpec,
    Volume,
    VolumeMount,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Secret, Service, ServiceAccount

from clusterlink import __version__
from clusterlink.api.crds import crds
from clusterlink.certs.peerdir import GATEWAY_FILES
from clusterlink.errors import ValidationError
from clusterlink.ids import PeerName, is_dns_label
from clusterlink.manifests.rbac import rbac_objects

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_NAMESPACE",
    "GATEWAY_POD_LABELS",
    "PEER_DIR_MOUNT",
    "PEER_PORT",
    "RUN_AS_UID",
    "IngressKind",
    "PeerDeployment",
    "gateway_args",
    "peer_manifests",
]

IngressKind = Literal["none", "NodePort", "LoadBalancer"]

DEFAULT_NAMESPACE: Final = "clusterlink-system"
DEFAULT_IMAGE: Final = f"ghcr.io/clusterlink-py/clusterlink:{__version__}"
NAME: Final = "clusterlink"  # the Deployment, its ServiceAccount, Role and Service
SECRET_NAME: Final = "clusterlink-peer"
GATEWAY_POD_LABELS: Final = {"app.kubernetes.io/name": "clusterlink"}
PEER_DIR_MOUNT: Final = "/etc/clusterlink/peer"
PEER_PORT: Final = 8443
METRICS_PORT: Final = 9090
RUN_AS_UID: Final = 10001
DEFAULT_SERVICE_PORT: Final = 443  # as the original's ingress
_SECRET_MODE: Final = 0o440
_LABEL_VALUE_MAX: Final = 63


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerDeployment:
    """What ``deploy peer`` can set; checked on construction (``ValidationError`` names the
    setting), so that no manifest is built from a value the API server would refuse."""

    peer: PeerName
    namespace: str = DEFAULT_NAMESPACE
    ingress: IngressKind = "LoadBalancer"
    ingress_port: int | None = None  # nodePort (NodePort), else the Service's port
    replicas: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = DEFAULT_IMAGE
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not is_dns_label(self.namespace):
            raise ValidationError(
                f"{self.namespace!r} is not a namespace name: a-z, 0-9 and '-', starting and "
                "ending with a letter or digit, at most 63 characters",
                field="namespace",
            )
        if self.ingress not in typing.get_args(IngressKind):
            raise ValidationError(
                f"{self.ingress!r}: use none, NodePort or LoadBalancer", field="ingress"
            )
        if self.ingress_port is not None and not 1 <= self.ingress_port <= 65535:
            raise ValidationError(f"{self.ingress_port} is not a port", field="ingress_port")
        if self.replicas < 1:
            raise ValidationError("at least one replica serves the peer", field="replicas")
        if not self.image or any(c.isspace() for c in self.image):
            raise ValidationError(f"{self.image!r} is not an image reference", field="image")


def gateway_args(deployment: PeerDeployment) -> list[str]:
    """The arguments of ``clusterlink`` (the image's entrypoint) in the gateway container."""
    args = [
        "gateway",
        "run",
        "--kubernetes",
        "--namespace",
        deployment.namespace,
        "--peer-dir",
        PEER_DIR_MOUNT,
        "--listen",
        f"0.0.0.0:{PEER_PORT}",
        "--import-host",
        "0.0.0.0",
        "--metrics-listen",
        f"0.0.0.0:{METRICS_PORT}",
        "--log-level",
        deployment.log_level,
    ]
    for key, value in deployment.labels.items():
        args += ["--label", f"{key}={value}"]
    return args


def peer_manifests(deployment: PeerDeployment, files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """Every object, in apply order, as plain dicts; ``files`` maps each of the gateway's
    file names (``cert.pem``, ``key.pem``, ``ca.pem``) to its content."""
    missing = sorted(set(GATEWAY_FILES) - set(files))
    if missing:
        raise ValueError(f"no content for {', '.join(missing)}")
    ns = deployment.namespace
    labels = {**GATEWAY_POD_LABELS, "app.kubernetes.io/part-of": "clusterlink"}
    if len(deployment.peer) <= _LABEL_VALUE_MAX:  # a longer peer name is no label value
        labels["app.kubernetes.io/instance"] = deployment.peer
    objects: list[Any] = [
        Namespace(metadata=ObjectMeta(name=ns)),
        *crds(),
        ServiceAccount(metadata=_meta(NAME, ns, labels)),
        *rbac_objects(name=NAME, namespace=ns, service_account=NAME, labels=labels),
        Secret(
            metadata=_meta(SECRET_NAME, ns, labels),
            type="Opaque",
            data={name: base64.b64encode(files[name]).decode() for name in GATEWAY_FILES},
        ),
        _deployment(deployment, labels),
        _service(deployment, labels),
    ]
    return [obj if isinstance(obj, dict) else _plain(obj.to_dict()) for obj in objects]


def _deployment(deployment: PeerDeployment, labels: dict[str, str]) -> Deployment:
    pod_labels = {**labels, "app.kubernetes.io/version": __version__}
    probe = HTTPGetAction(path="/metrics", port="metrics")
    container = Container(
        name="gateway",
        image=deployment.image,
        args=gateway_args(deployment),
        ports=[
            ContainerPort(name="peer", containerPort=PEER_PORT, protocol="TCP"),
            ContainerPort(name="metrics", containerPort=METRICS_PORT, protocol="TCP"),
        ],
        readinessProbe=Probe(httpGet=probe, periodSeconds=5, timeoutSeconds=2, failureThreshold=3),
        livenessProbe=Probe(httpGet=probe, periodSeconds=10, timeoutSeconds=5, failureThreshold=6),
        resources=ResourceRequirements(
            requests={"cpu": "100m", "memory": "128Mi"},
            limits={"memory": "512Mi"},  # no CPU limit: throttling would add latency
        ),
        securityContext=SecurityContext(
            allowPrivilegeEscalation=False,
            readOnlyRootFilesystem=True,
            runAsNonRoot=True,
            capabilities=Capabilities(drop=["ALL"]),
        ),
        volumeMounts=[
            VolumeMount(name="peer", mountPath=PEER_DIR_MOUNT, readOnly=True),
            VolumeMount(name="tmp", mountPath="/tmp"),
        ],
    )
    pod = PodSpec(
        serviceAccountName=NAME,
        automountServiceAccountToken=True,  # the gateway's credentials for the API
        enableServiceLinks=False,  # one variable per Service of every Import otherwise
        securityContext=PodSecurityContext(
            runAsNonRoot=True,
            runAsUser=RUN_AS_UID,
            runAsGroup=RUN_AS_UID,
            fsGroup=RUN_AS_UID,
            seccompProfile=SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[container],
        volumes=[
            Volume(
                name="peer",
                secret=SecretVolumeSource(secretName=SECRET_NAME, defaultMode=_SECRET_MODE),
            ),
            Volume(name="tmp", emptyDir=EmptyDirVolumeSource(sizeLimit="64Mi")),
        ],
    )
    return Deployment(
        metadata=_meta(NAME, deployment.namespace, labels),
        spec=DeploymentSpec(
            replicas=deployment.replicas,
            selector=LabelSelector(matchLabels=dict(GATEWAY_POD_LABELS)),
            template=PodTemplateSpec(metadata=ObjectMeta(labels=pod_labels), spec=pod),
        ),
    )


def _service(deployment: PeerDeployment, labels: dict[str, str]) -> Service:
    """The address other peers put in their Peer for this one: ``--ingress-port`` is the
    nodePort of a NodePort Service and the port of the others (default 443)."""
    port = ServicePort(name="peer", port=DEFAULT_SERVICE_PORT, targetPort="peer", protocol="TCP")
    if deployment.ingress == "NodePort":
        port.nodePort = deployment.ingress_port
    elif deployment.ingress_port is not None:
        port.port = deployment.ingress_port
    kind = "ClusterIP" if deployment.ingress == "none" else deployment.ingress
    return Service(
        metadata=_meta(NAME, deployment.namespace, labels),
        spec=ServiceSpec(type=kind, selector=dict(GATEWAY_POD_LABELS), ports=[port]),
    )


def _meta(name: str, namespace: str, labels: dict[str, str]) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=namespace, labels=dict(labels))


_HEAD: Final = ("apiVersion", "kind", "metadata")


def _plain(obj: dict[str, Any]) -> dict[str, Any]:
    """lightkube's dict with the head fields first, as people write manifests."""
    return {**{key: obj[key] for key in _HEAD if key in obj}, **obj}
