"""The OpenAPI description of the admin API's routes beside the resources: invitations and
links (``admin_links``) and flow records (``admin_flows``), merged into ``openapi``'s document.
"""

from __future__ import annotations

from typing import Any

from clusterlink.controlplane.admin_flows import MAX_LIMIT
from clusterlink.controlplane.openapi_parts import (
    NULLABLE_NUMBER,
    NULLABLE_STRING,
    STRING,
    closed,
    json_content,
    ref,
    request_body,
    responses,
)

__all__ = ["flow_schemas", "link_and_flow_paths", "link_schemas"]


def link_and_flow_paths() -> dict[str, Any]:
    """``POST /v1/invitations``, ``POST /v1/link`` and ``GET /v1/flows``."""
    return {
        "/v1/invitations": {
            "post": {
                "operationId": "invite",
                "description": "A one-time token inviting a peer to link with this gateway.",
                "requestBody": request_body("InviteBody"),
                "responses": responses(
                    json_content(ref("Invitation"), "the invitation and its token"),
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
                "requestBody": request_body("LinkBody"),
                "responses": responses(
                    json_content(ref("Link"), "the Peers made on both sides"),
                    400,
                    409,
                    413,
                    502,
                    503,
                ),
            }
        },
        "/v1/flows": {
            "get": {
                "operationId": "flows",
                "description": "The recent tunnel records: opened, refused, ended.",
                "parameters": _flows_parameters(),
                "responses": responses(
                    json_content(ref("Flows"), "records after `after`, oldest first"), 400
                ),
            }
        },
    }


def link_schemas(address: dict[str, Any]) -> dict[str, Any]:
    """The answers of ``POST /v1/invitations`` and ``POST /v1/link``."""
    labels = {"type": "object", "additionalProperties": STRING}
    outcome = {"type": "string", "enum": ["created", "configured", "unchanged"]}
    gateways = {"type": "array", "items": address, "minItems": 1}
    side = {"name": STRING, "gateways": gateways, "labels": labels}
    return {
        "Invitation": closed(
            {
                "id": STRING,
                "token": {"type": "string", "description": "holds a secret: hand it privately"},
                "peer": STRING,
                "expiresAt": {"type": "string", "description": "ISO-8601, UTC"},
                "uses": {"type": "integer", "minimum": 1},
                "gateways": gateways,
            },
            required=("id", "token", "peer", "expiresAt", "uses", "gateways"),
        ),
        "Link": closed(
            {
                "outcome": outcome,
                "peer": closed(side, required=("name", "gateways", "labels")),
                "remote": closed(
                    {**side, "outcome": outcome}, required=("name", "gateways", "labels", "outcome")
                ),
            },
            required=("outcome", "peer", "remote"),
        ),
    }


def flow_schemas() -> dict[str, Any]:
    record = {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "direction",
            "resource",
            "peer",
            "client",
            "protocol",
            "decision",
            "policy",
            "reason",
            "startedAt",
            "endedAt",
            "setupS",
            "durationS",
            "bytesUp",
            "bytesDown",
        ],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "direction": {"type": "string", "enum": ["egress", "ingress"]},
            "resource": STRING,
            "peer": STRING,
            "client": STRING,
            "protocol": STRING,
            "decision": {"type": "string", "enum": ["allowed", "denied", "failed"]},
            "policy": {"type": "string", "description": "the policy that decided, or empty"},
            "reason": STRING,
            "startedAt": {"type": "string", "description": "ISO-8601, UTC"},
            "endedAt": NULLABLE_STRING,
            "setupS": NULLABLE_NUMBER,
            "durationS": NULLABLE_NUMBER,
            "bytesUp": {"type": "integer", "minimum": 0},
            "bytesDown": {"type": "integer", "minimum": 0},
        },
    }
    flows = {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "open", "last"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}},
            "open": {"type": "integer", "minimum": 0},
            "last": {"type": "integer", "minimum": 0},
        },
    }
    return {"Flow": record, "Flows": flows}


def _flows_parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "the last record id seen; records after it are answered",
            "schema": {"type": "integer", "minimum": 0},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "at most this many records, the newest",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
    ]
