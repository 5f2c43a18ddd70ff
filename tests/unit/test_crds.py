"""The CRDs (api/crds.py): structural, valid for the API server, and in step with the models
(documents against them: test_crd_documents.py).

Run as a program (``.venv/bin/python -m tests.unit.test_crds``) to rewrite the committed
copies in ``config/crds/`` after a model change; ``test_committed_crds_are_the_generated_ones``
fails until then.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import pydantic
import pytest
from pydantic import BaseModel, Field, WithJsonSchema

from clusterlink.api import KINDS, dump_objects, kind_info
from clusterlink.api.crds import IMPORT_NAME_RULE, crd, crd_file_name, crds, structural
from clusterlink.api.resources import IMPORT_NAME_MAX, KindName
from clusterlink.controlplane.conditions import (
    EXPORT_VALID,
    IMPORT_SERVICE_VALID,
    IMPORT_TARGET_PORT_VALID,
)
from clusterlink.controlplane.health import PEER_REACHABLE
from tests.unit._kube_schemas import check_object, crd_schema, import_name_limit, schema_errors

CRD_DIR = Path(__file__).resolve().parents[2] / "config" / "crds"
HEADER = (
    "# Generated from the resource models by clusterlink.api.crds; do not edit.\n"
    "# Regenerate with: .venv/bin/python -m tests.unit.test_crds\n"
)


def committed_files() -> dict[str, str]:
    """What ``config/crds/`` should hold: one file per CRD, as the original lays them out."""
    return {crd_file_name(c): HEADER + dump_objects([c]) for c in crds()}


# --- the transform ---------------------------------------------------------------------------


class _Leaf(BaseModel):
    size: int = Field(ge=1, le=9)


class _Sample(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    leaf: _Leaf
    maybe: _Leaf | None = None
    mode: Literal["a", "b"] = "a"
    count: int = 0
    tags: dict[str, str] = Field(default_factory=dict)


def test_structural_inlines_references_and_marks_optional_ones_nullable() -> None:
    schema = structural(_Sample.model_json_schema())

    leaf = {"type": "object", "properties": {"size": {"type": "integer", "maximum": 9,
            "minimum": 1}}, "required": ["size"]}  # fmt: skip
    assert schema["properties"]["leaf"] == leaf
    assert schema["properties"]["maybe"] == {**leaf, "nullable": True}
    assert "$defs" not in schema and "$ref" not in str(schema) and "anyOf" not in str(schema)


def test_structural_drops_titles_closed_objects_and_defaults_that_restate_absence() -> None:
    schema = structural(_Sample.model_json_schema())

    assert "title" not in str(schema)
    assert "additionalProperties" not in schema  # extra="forbid": pruning does that
    assert schema["properties"]["mode"] == {"type": "string", "default": "a", "enum": ["a", "b"]}
    assert schema["properties"]["count"] == {"type": "integer"}  # default 0 says nothing
    assert schema["properties"]["tags"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }


def test_structural_writes_const_as_a_one_value_enum() -> None:
    assert structural({"type": "string", "const": "x"}) == {"type": "string", "enum": ["x"]}


def test_structural_never_shares_a_list_between_two_places() -> None:
    """Shared lists would be written as YAML anchors and aliases."""
    schema = structural(
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/E"}, "b": {"$ref": "#/$defs/E"}},
            "$defs": {"E": {"type": "string", "enum": ["x", "y"]}},
        }
    )

    assert schema["properties"]["a"]["enum"] is not schema["properties"]["b"]["enum"]


class _Node(BaseModel):
    children: list[_Node] = Field(default_factory=list)


class _Union(BaseModel):
    value: int | str


class _Untyped(BaseModel):
    value: Any


class _Open(BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    value: int


class _Exclusive(BaseModel):
    value: int = Field(gt=0)


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (_Node, "refers to itself"),
        (_Union, "union"),
        (_Untyped, "no type"),
        (_Open, "free-form objects"),
        (_Exclusive, "'exclusiveMinimum' has no CRD equivalent"),
    ],
    ids=["recursive", "union", "untyped", "open", "unknown-keyword"],
)
def test_structural_refuses_what_a_crd_cannot_say(model: type[BaseModel], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        structural(model.model_json_schema())


# --- the CRDs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "scope", "has_status"),
    [
        ("Peer", "peers", "Namespaced", True),
        ("Export", "exports", "Namespaced", True),
        ("Import", "imports", "Namespaced", True),
        ("AccessPolicy", "accesspolicies", "Namespaced", False),
        ("PrivilegedAccessPolicy", "privilegedaccesspolicies", "Cluster", False),
    ],
)
def test_each_kind_has_its_crd_as_in_the_original(
    kind: KindName, plural: str, scope: str, has_status: bool
) -> None:
    definition = crd(kind)
    spec = definition["spec"]
    (version,) = spec["versions"]

    assert definition["metadata"]["name"] == f"{plural}.clusterlink.net"
    assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "clusterlink.net",
        kind,
        plural,
    )
    assert spec["scope"] == scope
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert ("subresources" in version) == has_status
    if has_status:
        assert version["subresources"] == {"status": {}}


def test_there_is_one_crd_per_kind_in_registry_order() -> None:
    assert [c["spec"]["names"]["kind"] for c in crds()] == list(KINDS)


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (
            "Peer",
            [
                ("Reachable", '.status.conditions[?(@.type=="PeerReachable")].status'),
                ("Gateways", ".spec.gateways[*].host"),
            ],
        ),
        (
            "Export",
            [
                ("Host", ".spec.host"),
                ("Port", ".spec.port"),
                ("Valid", '.status.conditions[?(@.type=="ExportValid")].status'),
            ],
        ),
        (
            "Import",
            [
                ("Port", ".spec.port"),
                ("Target-Port", ".spec.targetPort"),
                ("Sources", ".spec.sources[*].peer"),
                ("LB", ".spec.lbScheme"),
            ],
        ),
        ("AccessPolicy", [("Action", ".spec.action")]),
        ("PrivilegedAccessPolicy", [("Action", ".spec.action")]),
    ],
)
def test_printer_columns_show_what_users_look_for(
    kind: KindName, columns: list[tuple[str, str]]
) -> None:
    printed = crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]

    assert [(c["name"], c["jsonPath"]) for c in printed] == [
        *columns,
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_condition_columns_name_the_condition_types_the_gateway_writes() -> None:
    written = {PEER_REACHABLE, EXPORT_VALID, IMPORT_SERVICE_VALID, IMPORT_TARGET_PORT_VALID}
    shown = {
        match
        for c in crds()
        for column in c["spec"]["versions"][0]["additionalPrinterColumns"]
        for match in re.findall(r'@\.type=="(\w+)"', column["jsonPath"])
    }

    assert shown <= written
    assert {PEER_REACHABLE, EXPORT_VALID} <= shown


@pytest.mark.parametrize("kind", list(KINDS))
def test_printer_columns_point_at_fields_of_the_schema(kind: KindName) -> None:
    schema = crd_schema(kind)
    for column in crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]:
        node: Mapping[str, Any] = schema
        for part in re.sub(r"\[[^]]*\]", "", column["jsonPath"]).strip(".").split("."):
            if node.get("type") == "array":
                node = node["items"]
            if part in ("metadata", "creationTimestamp") and node.get("type") == "object":
                break  # ObjectMeta: Kubernetes' own
            assert part in node.get("properties", {}), f"{column['name']}: no field {part}"
            node = node["properties"][part]


def _schema_nodes(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), Mapping):
            yield from _schema_nodes(node[key], f"{path}[{key}]")


@pytest.mark.parametrize("kind", list(KINDS))
def test_schemas_are_structural(kind: KindName) -> None:
    """The rules the API server applies to a v1 CRD's schema, besides its own schema."""
    schema = crd_schema(kind)
    for path, node in _schema_nodes(schema):
        where = path or "(root)"
        assert "type" in node, f"{where}: no type"
        assert not {"$ref", "anyOf", "oneOf", "allOf", "not"} & set(node), where
        assert node.get("additionalProperties", {}) is not False, where
        assert not ("properties" in node and "additionalProperties" in node), where
        assert "x-kubernetes-preserve-unknown-fields" not in node, where
        if "default" in node:
            assert schema_errors(node, node["default"]) == [], f"{where}: default"
    assert schema["properties"]["metadata"] == {"type": "object"}  # ObjectMeta is Kubernetes'
    assert schema["properties"]["apiVersion"] == schema["properties"]["kind"] == {"type": "string"}
    assert schema["required"] == ["spec"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_crds_are_valid_objects_for_the_kubernetes_api(kind: KindName) -> None:
    check_object(crd(kind))


def test_committed_crds_are_the_generated_ones() -> None:
    expected = committed_files()
    found = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}

    assert found == expected, (
        "config/crds/ differs from the models; regenerate: .venv/bin/python -m tests.unit.test_crds"
    )


# --- in step with the models ------------------------------------------------------------------


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    """What the field's annotations promise, in OpenAPI words."""
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            found["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            found["maximum"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            found["minLength"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            found["maxLength"] = item.max_length
        elif isinstance(item, WithJsonSchema) and item.json_schema:
            found.update({k: v for k, v in item.json_schema.items() if k != "type"})
    return found


def _check(
    annotation: Any,
    metadata: list[Any],
    node: Mapping[str, Any],
    path: str,
    *,
    optional: bool = False,
) -> None:
    """``node`` says what ``annotation`` (with ``metadata``) says: type, nullability, values,
    bounds, pattern; models are followed field by field."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        _check(base, [*metadata, *extra], node, path, optional=optional)
        return
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        _check(inner, metadata, node, path, optional=True)
        return
    if hasattr(annotation, "__supertype__"):  # a NewType such as PeerName
        _check(annotation.__supertype__, metadata, node, path, optional=optional)
        return
    assert bool(node.get("nullable")) == optional, f"{path}: nullable {not optional} in the CRD"
    constraints = _constraints(metadata)
    if origin is Literal:
        assert node["type"] == "string" and node["enum"] == list(typing.get_args(annotation)), path
    elif origin is list:
        assert node["type"] == "array", path
        if "minLength" in constraints:
            assert node["minItems"] == constraints.pop("minLength"), path
        _check(typing.get_args(annotation)[0], [], node["items"], f"{path}[]")
    elif origin is dict:
        assert node["type"] == "object" and "properties" not in node, path
        _check(typing.get_args(annotation)[1], [], node["additionalProperties"], f"{path}.*")
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        _check_model(annotation, node, path)
    else:
        wire = {int: "integer", str: "string", bool: "boolean", float: "number"}[annotation]
        assert node["type"] == wire, f"{path}: {node['type']} in the CRD, {wire} in the model"
    for key, value in constraints.items():
        assert node.get(key) == value, f"{path}: {key} {node.get(key)} != model's {value}"


def _check_model(model: type[BaseModel], node: Mapping[str, Any], path: str) -> None:
    assert node["type"] == "object", path
    properties = node.get("properties", {})
    wires = set()
    for name, field in model.model_fields.items():
        wire = field.alias or name
        wires.add(wire)
        where = f"{path}.{wire}"
        assert wire in properties, f"{where}: in the model, not in the CRD"
        child = properties[wire]
        assert field.is_required() == (wire in node.get("required", [])), where
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        assert child.get("default") == (default or None), f"{where}: default"
        _check(field.annotation, list(field.metadata), child, where)
    assert set(properties) == wires, f"{path}: in the CRD, not in the model"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_of_the_models_is_in_the_crd_with_its_type_and_rules(kind: KindName) -> None:
    """Read from the models' annotations, independently of the transform under test."""
    model = kind_info(kind).model
    schema = crd_schema(kind)
    for part in ("spec", "status"):
        field = model.model_fields[part]
        _check(field.annotation, list(field.metadata), schema["properties"][part], part)
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


def test_the_import_name_rule_is_the_models_limit() -> None:
    assert crd("Import")["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "x-kubernetes-validations"
    ] == [IMPORT_NAME_RULE]
    assert import_name_limit(IMPORT_NAME_RULE["rule"]) == IMPORT_NAME_MAX


if __name__ == "__main__":
    for stale in CRD_DIR.glob("*.yaml"):
        stale.unlink()
    CRD_DIR.mkdir(parents=True, exist_ok=True)
    for file_name, text in committed_files().items():
        (CRD_DIR / file_name).write_text(text)
        print(CRD_DIR / file_name)
