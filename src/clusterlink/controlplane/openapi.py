"""The OpenAPI description of the admin API, generated from the resource models.

One source of truth: the pydantic models that validate documents also describe them here, and
the name rules of ``api.names`` describe the path and query parameters, so the description
cannot drift from what the gateway accepts. Used by ``GET /v1/openapi.json`` and by the
schema-driven tests, which generate requests from it and check every answer against it.

What this adds to the models is what the HTTP layer decides: ``apiVersion`` and ``kind`` are
required on the wire (the models default them, ``api.documents`` insists on them), the request
and answer envelopes, the error body with every ``reason`` the API uses, and which statuses each
route can answer (docs/admin-api.md). It also states the label rules of ``api.names`` in JSON
schema terms (``_LABEL_FIELDS``): the models validate labels in Python only, and a description
that allowed any string would make most generated documents invalid. The prefix of a label key
is limited to 253 characters by ``api.names`` and not here (a pattern cannot say it); that is the
one way a document that fits the description can still be refused (``422``). Likewise it says
which operators of a ``matchExpressions`` entry take ``values``. Objects the API builds itself
(status, results, errors) are closed (``additionalProperties: false``) except ``gateway`` and
the peer entries of ``/v1/status``, which report runtime facts that may grow.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final, Literal

import pydantic
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from clusterlink.api import KINDS, plural
from clusterlink.api.names import NamespaceName, ResourceName
from clusterlink.controlplane.admin_input import BODY_FIELDS
from clusterlink.controlplane.admin_links import InviteBody, LinkBody
from clusterlink.errors import LinkRefused

__all__ = ["ERROR_REASONS", "openapi_document"]

ERROR_REASONS: Final = (
    "malformed",
    "forbidden",
    "not-found",
    "method-not-allowed",
    "conflict",
    "too-large",
    "invalid",
    "internal",
    "store-unavailable",
    *(reason for reason in LinkRefused.REASONS if reason != "conflict"),
)
"""Every ``reason`` an error body can carry (docs/admin-api.md)."""

_OUTCOMES = ("created", "configured", "unchanged", "deleted")
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"  # api.names: at most 63
_REF = "#/components/schemas/{model}"
_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _closed(properties: dict[str, Any], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


_ERROR_STATUSES = {
    400: "the request is malformed (body, query parameter or name); `field` names the part",
    403: "the client certificate is not this peer's admin certificate",
    404: "no such resource, kind or route",
    409: "the change contradicts the current state (e.g. an Import's port is in use)",
    413: "the request body is larger than the gateway accepts",
    422: "a document is invalid; `field` is its path in the body (`documents[1].spec.port`)",
    500: "a bug in the gateway; its log has the details",
    502: "the inviting peer could not be reached (`unreachable`); nothing was changed",
    503: "the state store cannot be read or written (disk full, read-only)",
}


def _responses(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
    """``ok`` as 200, plus the error statuses of this route (every route may answer 403 and
    500; every route that reads or writes the store, 503)."""
    codes = sorted({403, 500, *statuses})
    errors = {str(code): _json(_ref("Error"), _ERROR_STATUSES[code]) for code in codes}
    return {"200": ok, **errors}


def _label_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(label key, label map) as ``api.names`` checks them: a key is an optional DNS-name
    prefix and ``/``, then a name; a value is empty or a name."""
    dns_name = _string_schema(ResourceName)["pattern"].removeprefix("^").removesuffix("$")
    key = {"type": "string", "pattern": f"^(({dns_name})/)?{_LABEL_NAME}$"}
    value = {"type": "string", "pattern": f"^({_LABEL_NAME})?$"}
    return key, {"type": "object", "propertyNames": key, "additionalProperties": value}


# (schema, property) -> "key" or "map": the fields typed LabelKey or LabelMap in api.resources.
_LABEL_FIELDS: Final = {
    ("ObjectMeta", "labels"): "map",
    ("ClusterObjectMeta", "labels"): "map",
    ("PeerMeta", "labels"): "map",
    ("WorkloadSelector", "matchLabels"): "map",
    ("MatchExpression", "key"): "key",
}


def _document_schemas() -> dict[str, Any]:
    """The kinds' schemas (and the models they use) with ``apiVersion`` and ``kind`` required
    and the label rules stated, and the bodies of the routes that join sites."""
    bodies: list[type[BaseModel]] = [*KINDS.values(), InviteBody, LinkBody]
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in bodies
    ]
    _, defs = models_json_schema(models, by_alias=True, ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for model in KINDS.values():
        schema = schemas[model.__name__]
        schema["required"] = ["apiVersion", "kind", *schema.get("required", [])]
    label_key, label_map = _label_schemas()
    for (name, field), rule in _LABEL_FIELDS.items():
        properties = schemas[name]["properties"]
        properties[field] = {
            "title": properties[field].get("title", field),
            **(label_key if rule == "key" else label_map),
        }
    # api.resources.MatchExpression: In and NotIn need values, Exists and DoesNotExist take none.
    schemas["MatchExpression"]["if"] = {"properties": {"operator": {"enum": ["In", "NotIn"]}}}
    schemas["MatchExpression"]["then"] = {
        "required": ["values"],
        "properties": {"values": {"minItems": 1}},
    }
    schemas["MatchExpression"]["else"] = {"properties": {"values": {"maxItems": 0}}}
    # api.resources.ImportSpec fills a source's export in from the Import's own name and
    # namespace before the source is validated: on the wire only ``peer`` is required.
    source = schemas["ImportSource"]
    source["required"] = ["peer"]
    for field, default in (("exportName", "name"), ("exportNamespace", "namespace")):
        source["properties"][field]["description"] = f"default: the Import's own {default}"
    return schemas


def _string_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema ``api.names`` gives one of its string types."""
    schema: dict[str, Any] = pydantic.TypeAdapter(annotation).json_schema()
    return schema


def _envelopes() -> dict[str, Any]:
    kinds = list(KINDS)
    any_document = {"oneOf": [_ref(kind) for kind in kinds]}
    result = _closed(
        {
            "kind": {"type": "string", "enum": kinds},
            "namespace": _STRING,
            "name": _STRING,
            "outcome": {"type": "string", "enum": [*_OUTCOMES]},
        },
        required=("kind", "namespace", "name", "outcome"),
    )
    address = {"type": "string", "description": "host:port"}
    gateway = {
        "type": "object",
        "required": ["name", "fabric", "version", "labels", "listen", "admin", "importHost"],
        "properties": {
            "name": _STRING,
            "fabric": _STRING,
            "version": _STRING,
            "labels": {"type": "object", "additionalProperties": _STRING},
            "listen": address,
            "admin": address,
            "metrics": {"type": ["string", "null"], "description": "host:port, or null"},
            "importHost": _STRING,
            "uptimeS": {"type": "number", "minimum": 0},
        },
    }
    peer = {
        "type": "object",
        "required": ["name", "gateways"],
        "properties": {
            "name": _STRING,
            "gateways": {"type": "array", "items": address},
            "reachable": {"type": ["boolean", "null"]},
            "peered": {"type": ["boolean", "null"]},
            "reason": _NULLABLE_STRING,
            "lastSeen": _NULLABLE_STRING,
            "rttMs": {"type": ["number", "null"]},
            "labels": {"type": "object", "additionalProperties": _STRING},
        },
    }
    export = _closed(
        {"namespace": _STRING, "name": _STRING, "host": _STRING, "port": {"type": "integer"}},
        required=("namespace", "name", "host", "port"),
    )
    import_ = _closed(
        {
            "namespace": _STRING,
            "name": _STRING,
            "port": {"type": "integer"},
            "listen": _NULLABLE_STRING,
            "lbScheme": _STRING,
            "sources": {"type": "array", "items": _ref("ImportSource")},
        },
        required=("namespace", "name", "port", "listen", "lbScheme", "sources"),
    )
    return {
        "AnyDocument": any_document,
        "Documents": _closed(
            {field: {"type": "array", "items": _ref("AnyDocument")} for field in BODY_FIELDS},
            required=BODY_FIELDS,
        ),
        "Items": _closed(
            {"items": {"type": "array", "items": _ref("AnyDocument")}}, required=("items",)
        ),
        "Results": _closed(
            {
                "results": {"type": "array", "items": result},
                "tunnelsClosed": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "present when closeTunnels=true was asked",
                },
            },
            required=("results",),
        ),
        "Status": _closed(
            {
                "gateway": gateway,
                "peers": {"type": "array", "items": peer},
                "exports": {"type": "array", "items": export},
                "imports": {"type": "array", "items": import_},
            },
            required=("gateway", "peers", "exports", "imports"),
        ),
        "Error": _closed(
            {
                "reason": {"type": "string", "enum": list(ERROR_REASONS)},
                "message": _STRING,
                "field": _STRING,
            },
            required=("reason", "message"),
        ),
        **_link_envelopes(address),
    }


def _link_envelopes(address: dict[str, Any]) -> dict[str, Any]:
    """The answers of ``POST /v1/invitations`` and ``POST /v1/link``."""
    labels = {"type": "object", "additionalProperties": _STRING}
    outcome = {"type": "string", "enum": ["created", "configured", "unchanged"]}
    gateways = {"type": "array", "items": address, "minItems": 1}
    side = {"name": _STRING, "gateways": gateways, "labels": labels}
    return {
        "Invitation": _closed(
            {
                "id": _STRING,
                "token": {"type": "string", "description": "holds a secret: hand it privately"},
                "peer": _STRING,
                "expiresAt": {"type": "string", "description": "ISO-8601, UTC"},
                "uses": {"type": "integer", "minimum": 1},
                "gateways": gateways,
            },
            required=("id", "token", "peer", "expiresAt", "uses", "gateways"),
        ),
        "Link": _closed(
            {
                "outcome": outcome,
                "peer": _closed(side, required=("name", "gateways", "labels")),
                "remote": _closed(
                    {**side, "outcome": outcome}, required=("name", "gateways", "labels", "outcome")
                ),
            },
            required=("outcome", "peer", "remote"),
        ),
    }


def _parameters() -> dict[str, Any]:
    return {
        "kind": {
            "name": "kind",
            "in": "path",
            "required": True,
            "description": "the lower-case plural of the kind",
            "schema": {"type": "string", "enum": sorted(plural(kind) for kind in KINDS)},
        },
        "name": {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": _string_schema(ResourceName),
        },
        "namespace": {
            "name": "namespace",
            "in": "query",
            "required": False,
            "description": "does not filter cluster-scoped kinds (peers, privilegedaccesspolicies)",
            "schema": _string_schema(NamespaceName),
        },
        "closeTunnels": {
            "name": "closeTunnels",
            "in": "query",
            "required": False,
            "description": "also reset the open tunnels that the new state no longer allows",
            "schema": {"type": "boolean"},
        },
    }


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


@cache
def openapi_document(version: str) -> dict[str, Any]:
    def parameter(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/parameters/{name}"}

    documents_body = {
        "required": True,
        "content": {"application/json": {"schema": _ref("Documents")}},
    }
    results = _json(_ref("Results"), "what was done, one result per resource")
    document = _json(_ref("AnyDocument"), "the document, with its status")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ClusterLink gateway admin API",
            "version": version,
            "description": "Served over mutual TLS; see docs/admin-api.md.",
        },
        "security": [{"adminCertificate": []}],
        "paths": {
            "/v1/status": {
                "get": {
                    "operationId": "status",
                    "responses": _responses(
                        _json(_ref("Status"), "the gateway, its peers, exports and imports"),
                        503,
                    ),
                }
            },
            "/v1/apply": {
                "post": {
                    "operationId": "apply",
                    "description": "Create or update every document, all or nothing.",
                    "parameters": [parameter("closeTunnels")],
                    "requestBody": documents_body,
                    "responses": _responses(results, 400, 409, 413, 422, 503),
                }
            },
            "/v1/delete": {
                "post": {
                    "operationId": "deleteDocuments",
                    "description": "Delete what the documents name, all or nothing.",
                    "parameters": [parameter("closeTunnels")],
                    "requestBody": documents_body,
                    "responses": _responses(results, 400, 404, 413, 422, 503),
                }
            },
            "/v1/resources/{kind}": {
                "get": {
                    "operationId": "list",
                    "parameters": [parameter("kind"), parameter("namespace")],
                    "responses": _responses(
                        _json(_ref("Items"), "the documents, with their status"), 400, 404, 503
                    ),
                }
            },
            "/v1/resources/{kind}/{name}": {
                "get": {
                    "operationId": "get",
                    "parameters": [parameter("kind"), parameter("name"), parameter("namespace")],
                    "responses": _responses(document, 400, 404, 503),
                },
                "delete": {
                    "operationId": "delete",
                    "parameters": [
                        parameter("kind"),
                        parameter("name"),
                        parameter("namespace"),
                        parameter("closeTunnels"),
                    ],
                    "responses": _responses(results, 400, 404, 503),
                },
            },
            "/v1/invitations": {
                "post": {
                    "operationId": "invite",
                    "description": "A one-time token inviting a peer to link with this gateway.",
                    "requestBody": _body("InviteBody"),
                    "responses": _responses(
                        _json(_ref("Invitation"), "the invitation and its token"),
                        400,
                        409,
                        413,
                        503,
                    ),
                }
            },
            "/v1/link": {
                "post": {
                    "operationId": "link",
                    "description": "Present a token to the peer that issued it; then each side "
                    "has the other's Peer. Refusals change nothing on either side.",
                    "requestBody": _body("LinkBody"),
                    "responses": _responses(
                        _json(_ref("Link"), "the Peers made on both sides"),
                        400,
                        409,
                        413,
                        502,
                        503,
                    ),
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": _responses(
                        _json({"type": "object"}, "this description of the admin API")
                    ),
                }
            },
        },
        "components": {
            "schemas": {**_document_schemas(), **_envelopes()},
            "parameters": _parameters(),
            "securitySchemes": {
                "adminCertificate": {
                    "type": "mutualTLS",
                    "description": "this peer's admin certificate (<peer-dir>/admin/cert.pem)",
                }
            },
        },
    }
