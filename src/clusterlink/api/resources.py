"""The five resource kinds of DESIGN.md §4 as pydantic models: the wire contract.

Field names on the wire are the original ClusterLink's (camelCase); Python attributes are
snake_case, and ``from`` is ``from_``. Every model forbids unknown fields, so a typo is an
error instead of a silently ignored setting, and every model is frozen: a resource read from
the store can be shared between tasks without anyone changing it behind their back.

What is deliberately *not* here: parsing text, error wording (``documents``), the kind
registry (``kinds``), the attribute keys a policy selector may use (``policy.attributes``, their
one home; pure code like this), and any I/O. ``status`` is accepted on input so that the output of
``get -o yaml`` can be applied again, but only the gateway writes it; the store drops the status
of applied documents.

Build resources from wire dicts with ``documents.resource_from_dict``: it raises our
one-line ``ValidationError``. Constructing the classes directly raises pydantic's.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from pydantic_core import ValidationError as PydanticValidationError

from clusterlink.api.names import (
    HostField,
    LabelKey,
    LabelMap,
    NamespaceName,
    PeerNameField,
    ResourceName,
)
from clusterlink.ids import NamespacedName, ServiceProtocol
from clusterlink.kind_names import API_VERSION, KindName
from clusterlink.policy import Side, key_problem

__all__ = [
    "API_VERSION",
    "IMPORT_NAME_MAX",
    "PEER_GATEWAYS_MESSAGE",
    "UNSUPPORTED_FIELDS",
    "AccessPolicy",
    "AccessPolicySpec",
    "Action",
    "ClusterObjectMeta",
    "Condition",
    "EmptyStatus",
    "Export",
    "ExportSpec",
    "ExportStatus",
    "Gateway",
    "Import",
    "ImportSource",
    "ImportSourceStatus",
    "ImportSpec",
    "ImportStatus",
    "KindName",
    "LBScheme",
    "MatchExpression",
    "ObjectMeta",
    "Peer",
    "PeerMeta",
    "PeerSpec",
    "PeerStatus",
    "PrivilegedAccessPolicy",
    "Resource",
    "WorkloadSelector",
    "WorkloadSetOrSelector",
]


LBScheme = Literal["round-robin", "random", "static"]
Action = Literal["allow", "deny"]

PEER_GATEWAYS_MESSAGE: Final = (
    "must not be empty: a Peer needs at least one gateway, unless it dials in (spec.dialsIn: true)"
)

# Fields of the original ClusterLink that we refuse, with what to write instead.
UNSUPPORTED_FIELDS: Final = {"workloadSets": "not supported; use workloadSelector instead"}


class _Model(BaseModel):
    # defer_build: a model's validator is built when first used, not at import, so a gateway
    # or a command that never validates a kind does not pay for it (see bench/cli_speed.py).
    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,  # lets Python code write ImportSpec(lb_scheme=...)
        serialize_by_alias=True,
    )


class ObjectMeta(_Model):
    name: ResourceName
    namespace: NamespaceName = "default"
    labels: LabelMap = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @property
    def key(self) -> NamespacedName:
        """The resource's identity within its kind (cluster-scoped: namespace ``""``)."""
        return NamespacedName(self.namespace, self.name)


class ClusterObjectMeta(ObjectMeta):
    """Metadata of a cluster-scoped resource.

    A namespace given on input is dropped, as kubectl does, and never printed; the stored
    value is ``""`` so that keys of cluster-scoped resources are uniform.
    """

    namespace: SkipJsonSchema[Literal[""]] = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_namespace(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key != "namespace"}
        return data


class PeerMeta(ClusterObjectMeta):
    """A Peer's name is the remote gateway's certificate name, so it must be a DNS name."""

    name: PeerNameField


class Resource(_Model):
    """Common shape of every kind; the subclasses narrow ``kind``, ``spec`` and ``status``."""

    api_version: Literal["clusterlink.net/v1alpha1"] = API_VERSION
    kind: KindName
    metadata: ObjectMeta
    spec: _Model
    status: _Model | None = None


class EmptyStatus(_Model):
    """Nothing is reported for this kind yet; typed so that made-up fields are refused."""


class Condition(_Model):
    """One aspect of a resource's state, shaped as Kubernetes' ``metav1.Condition`` so that
    tools reading conditions (``kubectl wait --for=condition=...``) read ours too."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str  # CamelCase, for programs
    message: str = ""  # for people
    last_transition_time: str  # when ``status`` last changed (RFC 3339, UTC)


# --- Peer -------------------------------------------------------------------------------------


class Gateway(_Model):
    host: HostField
    port: int = Field(ge=1, le=65535)


class PeerSpec(_Model):
    """Where the peer's gateways listen; ``dials_in``: the peer cannot be dialled (it is
    behind NAT or a firewall that lets nothing in), so it dials this gateway and keeps that
    connection up, and this gateway reaches it only over that connection (a reverse link).
    Its ``gateways`` may then be empty."""

    gateways: list[Gateway] = Field(default_factory=list)
    dials_in: bool = Field(default=False, exclude_if=lambda dials_in: not dials_in)

    @model_validator(mode="after")
    def _reachable_somehow(self) -> PeerSpec:
        if not self.gateways and not self.dials_in:  # reported at spec.gateways
            error = PydanticCustomError("peer_gateways", PEER_GATEWAYS_MESSAGE, {})
            raise PydanticValidationError.from_exception_data(
                "PeerSpec", [{"type": error, "loc": ("gateways",), "input": []}]
            )
        return self


class PeerStatus(_Model):
    conditions: list[Condition] = Field(default_factory=list)  # PeerReachable
    reachable: bool | None = None
    # Whether the peer has a Peer for this gateway (else it refuses every tunnel from here);
    # None until a heartbeat said.
    peered: bool | None = None
    reason: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    last_seen: str | None = None  # ISO-8601, UTC
    rtt_ms: float | None = None


class Peer(Resource):
    """Another gateway of the fabric, and the addresses it can be reached at."""

    kind: Literal["Peer"] = "Peer"
    metadata: PeerMeta
    spec: PeerSpec
    status: PeerStatus | None = None


# --- Export -----------------------------------------------------------------------------------


class ExportSpec(_Model):
    """Where the exported service is. In Kubernetes mode both may be left out: no ``host``
    means the Service of the Export's name in its namespace, no ``port`` that Service's
    first port. A standalone gateway has no Service to look at and requires both."""

    host: HostField | None = None
    port: int = Field(default=0, ge=0, le=65535, exclude_if=lambda port: port == 0)
    # UDP: each client address of an Import is a flow, carried as datagrams in a tunnel.
    protocol: ServiceProtocol = Field(default="TCP", exclude_if=lambda proto: proto == "TCP")


class ExportStatus(_Model):
    conditions: list[Condition] = Field(default_factory=list)  # ExportValid


class Export(Resource):
    """A local service that other peers may reach (if policy allows)."""

    kind: Literal["Export"] = "Export"
    spec: ExportSpec
    status: ExportStatus | None = None


# --- Import -----------------------------------------------------------------------------------


class ImportSource(_Model):
    peer: PeerNameField
    export_name: ResourceName
    export_namespace: NamespaceName


class ImportSpec(_Model):
    """``port`` is where clients connect: standalone, the gateway's own listening port (0:
    lease a free one); in Kubernetes mode, the port of the Service of the Import's name.
    ``targetPort`` is where the gateway listens when it is not ``port``: in Kubernetes mode
    the gateway pods' port behind that Service (0: leased by the gateway and written back
    here); standalone, if set, it overrides ``port``."""

    port: int = Field(ge=0, le=65535)
    target_port: int = Field(default=0, ge=0, le=65535, exclude_if=lambda port: port == 0)
    sources: list[ImportSource] = Field(min_length=1)
    lb_scheme: LBScheme = "round-robin"
    # Must be the protocol of the exports it names: a UDP Import listens on a UDP port.
    protocol: ServiceProtocol = Field(default="TCP", exclude_if=lambda proto: proto == "TCP")

    @property
    def listen_port(self) -> int:
        """The port the gateway listens on (0: a leased one)."""
        return self.target_port or self.port


class ImportSourceStatus(ImportSource):
    reachable: bool | None = None
    last_error: str | None = None


class ImportStatus(_Model):
    listen: str | None = None  # the bound "host:port"
    sources: list[ImportSourceStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)


IMPORT_NAME_MAX: Final = 63


class Import(Resource):
    """A remote export made available on a local port.

    Its name is at most 63 characters, as in the original: in Kubernetes mode it names a
    Service, whose name is a DNS label.
    """

    kind: Literal["Import"] = "Import"
    spec: ImportSpec
    status: ImportStatus | None = None

    @field_validator("metadata")
    @classmethod
    def _name_fits_a_service(cls, metadata: ObjectMeta) -> ObjectMeta:
        if len(metadata.name) > IMPORT_NAME_MAX:
            raise PydanticCustomError(
                "import_name",
                "import name cannot exceed {limit} characters (it names a Kubernetes Service)",
                {"limit": IMPORT_NAME_MAX},
            )
        return metadata

    @model_validator(mode="before")
    @classmethod
    def _name_source_exports(cls, data: Any) -> Any:
        """A source without exportName/exportNamespace means the Import's own name/namespace.

        Filled in here rather than at use so that stored documents say what they mean.
        """
        if not isinstance(data, dict):
            return data
        metadata, spec = data.get("metadata"), data.get("spec")
        if not isinstance(metadata, dict) or not isinstance(spec, dict):
            return data
        sources = spec.get("sources")
        if not isinstance(sources, list) or "name" not in metadata:
            return data
        defaults = {
            "exportName": metadata["name"],
            "exportNamespace": metadata.get("namespace", "default"),
        }
        filled = [{**defaults, **src} if isinstance(src, dict) else src for src in sources]
        return {**data, "spec": {**spec, "sources": filled}}


# --- Policies ---------------------------------------------------------------------------------


class MatchExpression(_Model):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, validate_default=True)

    @field_validator("values")
    @classmethod
    def _values_fit_operator(cls, values: list[str], info: ValidationInfo) -> list[str]:
        operator = info.data.get("operator")
        if operator in ("In", "NotIn") and not values:
            raise ValueError(f"operator {operator} needs at least one value")
        if operator in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"operator {operator} takes no values")
        return values


class WorkloadSelector(_Model):
    """A Kubernetes label selector over attributes; empty matches everything."""

    match_labels: LabelMap = Field(default_factory=dict)
    match_expressions: list[MatchExpression] = Field(default_factory=list)


class WorkloadSetOrSelector(_Model):
    """The original's name; only the selector half is supported (see UNSUPPORTED_FIELDS)."""

    workload_selector: WorkloadSelector


class AccessPolicySpec(_Model):
    action: Action
    from_: list[WorkloadSetOrSelector] = Field(alias="from", min_length=1)
    to: list[WorkloadSetOrSelector] = Field(min_length=1)

    @model_validator(mode="after")
    def _keys_are_attributes_of_their_side(self) -> AccessPolicySpec:
        """A ClusterLink key that the side does not carry (misspelt, or the other side's)
        would make the selector silently never match; refuse it, naming the exact field.

        The error is raised as pydantic's own, with the location below ``spec``, so that
        pydantic prefixes the rest of the path as for any other field.
        """
        for wire, side, items in (
            ("from", Side.SOURCE, self.from_),
            ("to", Side.DESTINATION, self.to),
        ):
            for index, item in enumerate(items):
                selector = item.workload_selector
                where: tuple[str | int, ...] = (wire, index, "workloadSelector")
                for key in selector.match_labels:
                    _refuse_key(key, side, (*where, "matchLabels"), selector.match_labels)
                for number, expression in enumerate(selector.match_expressions):
                    at = (*where, "matchExpressions", number, "key")
                    _refuse_key(expression.key, side, at, expression.model_dump(by_alias=True))
        return self


def _refuse_key(key: str, side: Side, loc: tuple[str | int, ...], given: object) -> None:
    problem = key_problem(key, side)
    if problem is None:
        return
    # ``given`` is the mapping that holds the key: the problem already quotes the key itself.
    error = PydanticCustomError("attribute_key", "{problem}", {"problem": problem})
    raise PydanticValidationError.from_exception_data(
        "AccessPolicySpec", [{"type": error, "loc": loc, "input": given}]
    )


class AccessPolicy(Resource):
    """Allows or denies connections of its namespace's imports (egress) and exports (ingress)."""

    kind: Literal["AccessPolicy"] = "AccessPolicy"
    spec: AccessPolicySpec
    status: EmptyStatus | None = None


class PrivilegedAccessPolicy(Resource):
    """A cluster-wide policy, evaluated before every AccessPolicy."""

    kind: Literal["PrivilegedAccessPolicy"] = "PrivilegedAccessPolicy"
    metadata: ClusterObjectMeta
    spec: AccessPolicySpec
    status: EmptyStatus | None = None
