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
from clusterlink.controlplane.openapi_explain import explain_paths, explain_schemas
from clusterlink.controlplane.openapi_parts import (
    NULLABLE_STRING,
    REF,
    STRING,
    closed,
    json_content,
    ref,
    responses,
)
from clusterlink.controlplane.openapi_routes import (
    flow_schemas,
    link_and_flow_paths,
    link_schemas,
)
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
    _, defs = models_json_schema(models, by_alias=True, ref_template=REF)
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
    any_document = {"oneOf": [ref(kind) for kind in kinds]}
    result = closed(
        {
            "kind": {"type": "string", "enum": kinds},
            "namespace": STRING,
            "name": STRING,
            "outcome": {"type": "string", "enum": [*_OUTCOMES]},
        },
        required=("kind", "namespace", "name", "outcome"),
    )
    address = {"type": "string", "description": "host:port"}
    gateway = {
        "type": "object",
        "required": ["name", "fabric", "version", "labels", "listen", "admin", "importHost"],
        "properties": {
            "name": STRING,
            "fabric": STRING,
            "version": STRING,
            "labels": {"type": "object", "additionalProperties": STRING},
            "listen": address,
            "admin": address,
            "metrics": {"type": ["string", "null"], "description": "host:port, or null"},
            "importHost": STRING,
            "uptimeS": {"type": "number", "minimum": 0},
        },
    }
    peer = {
        "type": "object",
        "required": ["name", "gateways"],
        "properties": {
            "name": STRING,
            "gateways": {"type": "array", "items": address},
            "dialsIn": {"type": "boolean", "description": "it keeps a link to us instead"},
            "reachable": {"type": ["boolean", "null"]},
            "peered": {"type": ["boolean", "null"]},
            "reason": NULLABLE_STRING,
            "lastSeen": NULLABLE_STRING,
            "rttMs": {"type": ["number", "null"]},
            "labels": {"type": "object", "additionalProperties": STRING},
        },
    }
    protocol = {"type": "string", "enum": ["TCP", "UDP"]}
    export = closed(
        {
            "namespace": STRING,
            "name": STRING,
            "host": STRING,
            "port": {"type": "integer"},
            "protocol": protocol,
        },
        required=("namespace", "name", "host", "port", "protocol"),
    )
    import_ = closed(
        {
            "namespace": STRING,
            "name": STRING,
            "port": {"type": "integer"},
            "protocol": protocol,
            "listen": NULLABLE_STRING,
            "lbScheme": STRING,
            "sources": {"type": "array", "items": ref("ImportSource")},
        },
        required=("namespace", "name", "port", "protocol", "listen", "lbScheme", "sources"),
    )
    return {
        "AnyDocument": any_document,
        "Documents": closed(
            {field: {"type": "array", "items": ref("AnyDocument")} for field in BODY_FIELDS},
            required=BODY_FIELDS,
        ),
        "Items": closed(
            {"items": {"type": "array", "items": ref("AnyDocument")}}, required=("items",)
        ),
        "Results": closed(
            {
                "results": {"type": "array", "items": result},
                "tunnelsClosed": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "present when closeTunnels=true was asked",
                },
                "dryRun": {
                    "type": "boolean",
                    "const": True,
                    "description": "present when dryRun=true was asked: nothing was changed, "
                    "the results say what would have been",
                },
            },
            required=("results",),
        ),
        "Status": closed(
            {
                "gateway": gateway,
                "peers": {"type": "array", "items": peer},
                "exports": {"type": "array", "items": export},
                "imports": {"type": "array", "items": import_},
            },
            required=("gateway", "peers", "exports", "imports"),
        ),
        "Error": closed(
            {
                "reason": {"type": "string", "enum": list(ERROR_REASONS)},
                "message": STRING,
                "field": STRING,
            },
            required=("reason", "message"),
        ),
        **link_schemas(address),
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
        "dryRun": {
            "name": "dryRun",
            "in": "query",
            "required": False,
            "description": "validate everything and answer what would change, changing nothing "
            "(no tunnel is closed either)",
            "schema": {"type": "boolean"},
        },
    }


@cache
def openapi_document(version: str) -> dict[str, Any]:
    def parameter(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/parameters/{name}"}

    documents_body = {
        "required": True,
        "content": {"application/json": {"schema": ref("Documents")}},
    }
    results = json_content(ref("Results"), "what was done, one result per resource")
    document = json_content(ref("AnyDocument"), "the document, with its status")
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
                    "responses": responses(
                        json_content(ref("Status"), "the gateway, its peers, exports and imports"),
                        503,
                    ),
                }
            },
            "/v1/apply": {
                "post": {
                    "operationId": "apply",
                    "description": "Create or update every document, all or nothing.",
                    "parameters": [parameter("closeTunnels"), parameter("dryRun")],
                    "requestBody": documents_body,
                    "responses": responses(results, 400, 409, 413, 422, 503),
                }
            },
            "/v1/delete": {
                "post": {
                    "operationId": "deleteDocuments",
                    "description": "Delete what the documents name, all or nothing.",
                    "parameters": [parameter("closeTunnels"), parameter("dryRun")],
                    "requestBody": documents_body,
                    "responses": responses(results, 400, 404, 413, 422, 503),
                }
            },
            "/v1/resources/{kind}": {
                "get": {
                    "operationId": "list",
                    "parameters": [parameter("kind"), parameter("namespace")],
                    "responses": responses(
                        json_content(ref("Items"), "the documents, with their status"),
                        400,
                        404,
                        503,
                    ),
                }
            },
            "/v1/resources/{kind}/{name}": {
                "get": {
                    "operationId": "get",
                    "parameters": [parameter("kind"), parameter("name"), parameter("namespace")],
                    "responses": responses(document, 400, 404, 503),
                },
                "delete": {
                    "operationId": "delete",
                    "parameters": [
                        parameter("kind"),
                        parameter("name"),
                        parameter("namespace"),
                        parameter("closeTunnels"),
                        parameter("dryRun"),
                    ],
                    "responses": responses(results, 400, 404, 503),
                },
            },
            **link_and_flow_paths(),
            **explain_paths(),
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": responses(
                        json_content({"type": "object"}, "this description of the admin API")
                    ),
                }
            },
        },
        "components": {
            "schemas": {
                **_document_schemas(),
                **_envelopes(),
                **flow_schemas(),
                **explain_schemas(),
            },
            "parameters": _parameters(),
            "securitySchemes": {
                "adminCertificate": {
                    "type": "mutualTLS",
                    "description": "this peer's admin certificate (<peer-dir>/admin/cert.pem)",
                }
            },
        },
    }
