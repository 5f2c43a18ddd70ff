"""Pieces of the admin API's OpenAPI description that every part of it uses: references,
JSON bodies, closed objects and the error answers each route can give.

Apart from ``openapi`` so that the description of the routes added beside the resource
routes (``openapi_routes``) is written the same way without importing the whole document.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ERROR_STATUSES",
    "NULLABLE_NUMBER",
    "NULLABLE_STRING",
    "REF",
    "STRING",
    "closed",
    "json_content",
    "ref",
    "request_body",
    "responses",
]

REF: Final = "#/components/schemas/{model}"
STRING: Final = {"type": "string"}
NULLABLE_STRING: Final = {"type": ["string", "null"]}
NULLABLE_NUMBER: Final = {"type": ["number", "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def closed(properties: dict[str, Any], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


ERROR_STATUSES: Final = {
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


def responses(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
    """``ok`` as 200, plus the error statuses of this route (every route may answer 403 and
    500; every route that reads or writes the store, 503)."""
    codes = sorted({403, 500, *statuses})
    errors = {str(code): json_content(ref("Error"), ERROR_STATUSES[code]) for code in codes}
    return {"200": ok, **errors}


def request_body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}
