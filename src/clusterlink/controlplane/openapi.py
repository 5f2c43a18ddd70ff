"""The OpenAPI description of the admin API, generated from the resource models.

One source of truth: the pydantic models that validate documents also describe them here, so
the description cannot drift from what the gateway accepts. Used by ``GET /v1/openapi.json``
and by schema-driven tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from clusterlink.api.kinds import KINDS, plural

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "error")
_ERRORS = {str(s): _ERROR for s in (400, 403, 404, 409, 422, 503)}


@cache
def openapi_document(version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in KINDS.values()
    ]
    _, defs = models_json_schema(models, by_alias=True, ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    any_document = {"oneOf": [_ref(model.__name__) for model in KINDS.values()]}
    schemas["Error"] = {
        "type": "object",
        "required": ["reason", "message"],
        "properties": {
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": "string"},
        },
    }
    schemas["Documents"] = {
        "type": "object",
        "required": ["documents"],
        "properties": {"documents": {"type": "array", "items": any_document}},
    }
    schemas["Results"] = {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        k: {"type": "string"} for k in ("kind", "namespace", "name", "outcome")
                    },
                },
            }
        },
    }
    kinds = sorted(plural(kind) for kind in KINDS)
    kind_param = {
        "name": "kind",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": kinds},
    }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    ns_param = {"name": "namespace", "in": "query", "required": False, "schema": {"type": "string"}}
    close_param = {
        "name": "closeTunnels",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["true", "false"]},
    }
    documents_body = {
        "required": True,
        "content": {"application/json": {"schema": _ref("Documents")}},
    }
    results = {"200": _json(_ref("Results"), "what was done"), **_ERRORS}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ClusterLink gateway admin API", "version": version},
        "paths": {
            "/v1/status": {
                "get": {
                    "operationId": "status",
                    "responses": {
                        "200": _json(
                            {"type": "object"}, "the gateway, its peers, exports and imports"
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/v1/apply": {
                "post": {
                    "operationId": "apply",
                    "parameters": [close_param],
                    "requestBody": documents_body,
                    "responses": results,
                }
            },
            "/v1/delete": {
                "post": {
                    "operationId": "deleteDocuments",
                    "parameters": [close_param],
                    "requestBody": documents_body,
                    "responses": results,
                }
            },
            "/v1/resources/{kind}": {
                "get": {
                    "operationId": "list",
                    "parameters": [kind_param, ns_param],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"items": {"type": "array", "items": any_document}},
                            },
                            "the documents",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/v1/resources/{kind}/{name}": {
                "get": {
                    "operationId": "get",
                    "parameters": [kind_param, name_param, ns_param],
                    "responses": {"200": _json(any_document, "the document"), **_ERRORS},
                },
                "delete": {
                    "operationId": "delete",
                    "parameters": [kind_param, name_param, ns_param, close_param],
                    "responses": results,
                },
            },
        },
        "components": {"schemas": schemas},
    }
