"""The admin API's ``POST /v1/explain``: which policy would decide a connection, and why.

``clusterlink explain`` asks it what this gateway would decide for a connection it has not
seen, without opening one: on egress, a client of an Import (one answer per source of the
Import, because each source is another destination); on ingress, a peer asking for an
Export. The attributes are built by the very functions the data path uses (``authz``) from
the current resources and heartbeat-learned peer labels, and ``policy.explain`` walks the
same tiers as the decision, so the answer cannot drift from what a connection would get.

What it refuses to guess: an unknown Import, Export or (on ingress) calling Peer is a ``404``
naming it, not a made-up trace; a source whose Peer is not defined here is reported with that
``problem`` (the data path skips it before any policy), its tiers computed all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from clusterlink.api import ImportSource
from clusterlink.api.names import PeerNameField
from clusterlink.controlplane.admin_input import parse_body, parse_key
from clusterlink.controlplane.authz import (
    ClientIdentity,
    LocalPeer,
    egress_destination,
    egress_source_attributes,
    ingress_attributes,
)
from clusterlink.controlplane.catalog import Snapshot
from clusterlink.errors import BadRequest, NotFoundError
from clusterlink.ids import NamespacedName
from clusterlink.policy import Explanation, explain, source_attributes

__all__ = ["ExplainBody", "ExplainRoutes"]

_R = TypeVar("_R")
_MAX_TEXT = 253
_MAX_LABELS = 64


class ExplainBody(BaseModel):
    """``POST /v1/explain``: ``import`` (egress; ``peer`` then picks one of its sources) or
    ``export`` with the calling ``peer`` (ingress), and what is known of the client."""

    model_config = ConfigDict(
        defer_build=True,  # built on first use: a gateway starts without it
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
    )

    import_: str | None = Field(default=None, alias="import", min_length=1, max_length=_MAX_TEXT)
    export: str | None = Field(default=None, min_length=1, max_length=_MAX_TEXT)
    peer: PeerNameField | None = None
    client_ip: str | None = Field(default=None, min_length=1, max_length=64)
    client_namespace: str | None = Field(default=None, min_length=1, max_length=_MAX_TEXT)
    client_service_account: str | None = Field(default=None, min_length=1, max_length=_MAX_TEXT)
    client_labels: dict[str, str] = Field(default_factory=dict, max_length=_MAX_LABELS)

    @model_validator(mode="after")
    def _one_direction(self) -> Self:
        if (self.import_ is None) == (self.export is None):
            raise ValueError("give exactly one of import (egress) and export (ingress)")
        if self.export is not None and self.peer is None:
            raise ValueError("an export is explained for a calling peer: give peer too")
        return self


class ExplainRoutes:
    """The handler; ``routes`` is what ``AdminServer`` serves.

    ``snapshot``: the current resources (the catalog's). ``peer_labels``: a peer's labels as
    its heartbeats report them. ``identify``: who the
    client at an address is, where the cluster knows (Kubernetes: its Pod), as egress asks;
    used when the request gives an address and nothing else of the client.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        local: LocalPeer,
        peer_labels: Callable[[str], Mapping[str, str]],
        identify: Callable[[str], ClientIdentity | None] = lambda _ip: None,
    ) -> None:
        self._snapshot = snapshot
        self._local = local
        self._peer_labels = peer_labels
        self._identify = identify

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/explain", self.explain)]

    async def explain(self, request: web.Request) -> web.Response:
        body = parse_body(
            await request.read(), ExplainBody, shape='{"import": "NS/NAME", "clientIp": ...}'
        )
        return web.json_response(self.answer(body))

    def answer(self, body: ExplainBody) -> dict[str, Any]:
        """The explanation of ``body`` over the current resources; ``NotFoundError`` for an
        unknown Import, Export or calling Peer."""
        snapshot = self._snapshot()
        if body.import_ is not None:
            return self._egress(snapshot, body, body.import_)
        assert body.export is not None and body.peer is not None  # checked by the model
        return self._ingress(snapshot, body, body.export, body.peer)

    def _find(
        self, kind: str, text: str, resources: Mapping[NamespacedName, _R]
    ) -> tuple[NamespacedName, _R]:
        key = _ref(kind, text)
        found = resources.get(key)
        if found is None:
            raise NotFoundError(
                f"no {kind} {key} at peer {self._local.name}; `clusterlink get {kind}s -A` "
                "lists them"
            )
        return key, found

    def _egress(self, snapshot: Snapshot, body: ExplainBody, text: str) -> dict[str, Any]:
        key, imp = self._find("import", text, snapshot.imports)
        sources = [s for s in imp.spec.sources if body.peer is None or s.peer == body.peer]
        if not sources:
            peers = ", ".join(sorted({s.peer for s in imp.spec.sources}))
            raise NotFoundError(f"import {key} has no source at peer {body.peer}; it has {peers}")
        identity = None
        if body.client_ip is not None and not _knows_client(body):
            identity = self._identify(body.client_ip)
        if identity is None:
            src = _source(body, self._local.name, self._local.labels)
        else:
            src = egress_source_attributes(self._local, body.client_ip or "", identity)
        traces = []
        for source in sources:
            dst = egress_destination(imp, source, self._peer_labels(source.peer))
            result = explain(snapshot.policies, src, dst, key.namespace)
            problem = _missing_peer(snapshot, source)
            traces.append(
                _trace(
                    source.peer,
                    _export_of(source),
                    src=src,
                    dst=dst,
                    result=result,
                    problem=problem,
                )
            )
        return _answer("egress", key, traces)

    def _ingress(
        self, snapshot: Snapshot, body: ExplainBody, text: str, caller: str
    ) -> dict[str, Any]:
        key, export = self._find("export", text, snapshot.exports)
        if caller not in snapshot.peers:
            raise NotFoundError(
                f"no Peer named {caller!r} at peer {self._local.name}: its tunnels are refused "
                "before any policy; `clusterlink get peers` lists them"
            )
        # What the calling gateway would send: its name and labels (as its heartbeats say)
        # and what it knows of the client.
        claimed = _source(body, caller, self._peer_labels(caller))
        src, dst = ingress_attributes(self._local, export, caller, claimed)
        result = explain(snapshot.policies, src, dst, key.namespace)
        trace = _trace(caller, str(key), src=src, dst=dst, result=result, problem=None)
        return _answer("ingress", key, [trace])


def _source(body: ExplainBody, peer: str, peer_labels: Mapping[str, str]) -> dict[str, str]:
    """The source side: a gateway (ours on egress, the caller on ingress) and its client."""
    return source_attributes(
        peer_name=peer,
        peer_labels=peer_labels,
        client_ip=body.client_ip,
        client_namespace=body.client_namespace,
        client_service_account=body.client_service_account,
        client_labels=body.client_labels,
    )


def _knows_client(body: ExplainBody) -> bool:
    """Whether the request says who the client is beyond its address."""
    return bool(body.client_namespace or body.client_service_account or body.client_labels)


def _ref(field: str, text: str) -> NamespacedName:
    """``NAMESPACE/NAME`` or ``NAME`` (namespace ``default``), checked as names are."""
    namespace, _, name = text.rpartition("/")
    try:
        key = parse_key(f"{field}s", name, namespace or None)
    except BadRequest as exc:
        raise BadRequest(f"{field}: {exc}", field=field) from None
    return NamespacedName(key.namespace, key.name)


def _export_of(source: ImportSource) -> str:
    return f"{source.export_namespace}/{source.export_name}"


def _missing_peer(snapshot: Snapshot, source: ImportSource) -> str | None:
    if source.peer in snapshot.peers:
        return None
    return f"no Peer named {source.peer!r} is defined: this source is skipped before any policy"


def _trace(
    peer: str,
    export: str,
    *,
    src: dict[str, str],
    dst: dict[str, str],
    result: Explanation,
    problem: str | None,
) -> dict[str, Any]:
    decision = result.decision
    return {
        "peer": peer,
        "export": export,
        "source": src,
        "destination": dst,
        "tiers": [
            {
                "tier": str(t.tier),
                "checked": t.checked,
                "matched": list(t.matched),
                "reached": t.reached,
                "deciding": t.is_deciding,
            }
            for t in result.tiers
        ],
        "decision": str(decision.action),
        "decidedBy": decision.decided_by,
        "privileged": decision.privileged,
        "summary": str(decision),
        "problem": problem,
    }


def _answer(direction: str, key: NamespacedName, traces: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "direction": direction,
        "resource": str(key),
        "namespace": key.namespace,
        "traces": traces,
    }
