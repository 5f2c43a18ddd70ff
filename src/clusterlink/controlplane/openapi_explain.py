"""The OpenAPI description of ``POST /v1/explain`` (``admin_explain``), merged into
``openapi``'s document: the body straight from its model, the answer written out here."""

from __future__ import annotations

from typing import Any

from clusterlink.controlplane.admin_explain import ExplainBody
from clusterlink.controlplane.openapi_parts import (
    NULLABLE_STRING,
    REF,
    STRING,
    closed,
    json_content,
    ref,
    request_body,
    responses,
)
from clusterlink.policy import Tier

__all__ = ["explain_paths", "explain_schemas"]


def explain_paths() -> dict[str, Any]:
    return {
        "/v1/explain": {
            "post": {
                "operationId": "explain",
                "description": "Which policy would decide a connection, tier by tier, without "
                "opening one: a client of an Import (egress, one trace per source) or a peer "
                "asking for an Export (ingress).",
                "requestBody": request_body("ExplainBody"),
                "responses": responses(
                    json_content(ref("Explanation"), "the decision and the path to it"), 400, 404
                ),
            }
        }
    }


def explain_schemas() -> dict[str, Any]:
    attributes = {"type": "object", "additionalProperties": STRING}
    tier = closed(
        {
            "tier": {"type": "string", "enum": [str(t) for t in Tier]},
            "checked": {"type": "integer", "minimum": 0},
            "matched": {"type": "array", "items": STRING},
            "reached": {"type": "boolean"},
            "deciding": {"type": "boolean"},
        },
        required=("tier", "checked", "matched", "reached", "deciding"),
    )
    trace = closed(
        {
            "peer": STRING,
            "export": STRING,
            "source": attributes,
            "destination": attributes,
            "tiers": {"type": "array", "items": tier, "minItems": 5, "maxItems": 5},
            "decision": {"type": "string", "enum": ["allow", "deny"]},
            "decidedBy": {"type": "string", "description": "a policy, or `default deny`"},
            "privileged": {"type": "boolean"},
            "summary": STRING,
            "problem": NULLABLE_STRING,
        },
        required=(
            "peer",
            "export",
            "source",
            "destination",
            "tiers",
            "decision",
            "decidedBy",
            "privileged",
            "summary",
            "problem",
        ),
    )
    explanation = closed(
        {
            "direction": {"type": "string", "enum": ["egress", "ingress"]},
            "resource": STRING,
            "namespace": STRING,
            "traces": {"type": "array", "items": trace, "minItems": 1},
        },
        required=("direction", "resource", "namespace", "traces"),
    )
    body = ExplainBody.model_json_schema(by_alias=True, ref_template=REF)
    return {"ExplainBody": body, "Explanation": explanation}
