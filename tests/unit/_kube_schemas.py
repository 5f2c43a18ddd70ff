"""Checks of Kubernetes objects without a cluster, shared by the CRD and manifest tests.

``check_object`` validates against the API server's own OpenAPI schemas of one Kubernetes
release, as packaged by ``kubernetes-validate``, in strict mode: an unknown field fails, as
it does with ``kubectl apply`` (strict field validation). ``json_schema`` turns a CRD's
OpenAPI v3 schema into the JSON schema a validator understands (``nullable``), and adds what
the API server does on top of the schema for a ``kubectl apply``: unknown fields refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import jsonschema_rs
import kubernetes_validate

from clusterlink.api.crds import crd
from clusterlink.api.resources import KindName

# The newest release kubernetes-validate 1.37 ships schemas for (its `latest_version()`).
KUBERNETES_VERSION: Final = "1.37"


def check_object(obj: Mapping[str, Any]) -> None:
    """Raise ``kubernetes_validate.ValidationError`` if the API server's schema refuses ``obj``."""
    kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)


def json_schema(openapi: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD's ``openAPIV3Schema`` as JSON schema: ``nullable`` as a ``null`` type, and every
    object with named fields closed to others."""
    out: dict[str, Any] = {}
    for key, value in openapi.items():
        if key == "properties":
            out[key] = {name: json_schema(child) for name, child in value.items()}
            out["additionalProperties"] = False
        elif key in ("items", "additionalProperties"):
            out[key] = json_schema(value)
        elif key != "nullable" and not key.startswith("x-kubernetes-"):
            out[key] = value
    if openapi.get("nullable"):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def schema_errors(openapi: Mapping[str, Any], obj: Any) -> list[str]:
    """Why ``obj`` does not fit the CRD schema ``openapi`` (empty: it fits)."""
    validator = jsonschema_rs.validator_for(json_schema(openapi))
    return [
        f"{'.'.join(str(part) for part in error.instance_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def crd_schema(kind: KindName) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``kind``'s CRD."""
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def import_name_limit(rule: str) -> int:
    """The one CEL rule of the CRDs, read as what it says (CEL itself cannot run here)."""
    match = re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", rule)
    assert match, f"not the expected rule: {rule}"
    return int(match.group(1))
