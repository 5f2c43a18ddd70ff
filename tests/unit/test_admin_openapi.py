"""The OpenAPI description says what the admin API serves and accepts, no more and no less.

The schema-driven run (tests/integration/test_admin_api_schema.py) checks the gateway against
the description; these check the description against the code: every route is described, it
loads as OpenAPI, and the label rules it states are exactly those of ``api.names``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, cast

import pydantic
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from clusterlink.api import WorkloadSelector
from clusterlink.controlplane.admin import AdminServer
from clusterlink.controlplane.admin_explain import ExplainRoutes
from clusterlink.controlplane.admin_flows import FlowRoutes
from clusterlink.controlplane.admin_links import LinkRoutes
from clusterlink.controlplane.openapi import ERROR_REASONS, openapi_document

DOCS = Path(__file__).parents[2] / "docs" / "admin-api.md"
DOCUMENT = openapi_document("test")
SCHEMAS = DOCUMENT["components"]["schemas"]


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route the admin app serves, HEAD aside (aiohttp adds it)."""
    nothing = cast(Any, None)
    server = AdminServer(
        local_name="a",
        context=nothing,
        store=nothing,
        catalog=nothing,
        resources=nothing,
        health=nothing,
        gateway_info=nothing,
        close_revoked_tunnels=nothing,
        links=LinkRoutes(nothing, nothing),
        flows=FlowRoutes(nothing),
        explain=ExplainRoutes(nothing, nothing, nothing),
    )
    return {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_every_served_route_is_described_and_nothing_else() -> None:
    described = {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
    }

    assert described == served_routes()


def test_the_description_loads_as_openapi_with_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))

    loaded = list(schema.get_all_operations())

    assert [result for result in loaded if not isinstance(result, Ok)] == []
    assert len(loaded) == len(served_routes())


def test_every_error_reason_is_documented_for_users() -> None:
    table = DOCS.read_text()

    assert [reason for reason in ERROR_REASONS if f"| `{reason}` |" not in table] == []


def test_documents_must_name_their_api_version_and_kind() -> None:
    for kind in ("Peer", "Export", "Import", "AccessPolicy", "PrivilegedAccessPolicy"):
        assert {"apiVersion", "kind", "metadata", "spec"} <= set(SCHEMAS[kind]["required"])


def whole(pattern: str) -> re.Pattern[str]:
    """A JSON-schema pattern ``^...$`` for ``fullmatch`` (Python's ``$`` also matches before
    a final newline, ECMA's does not)."""
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


LABEL_MAP = SCHEMAS["WorkloadSelector"]["properties"]["matchLabels"]
KEY_PATTERN = whole(LABEL_MAP["propertyNames"]["pattern"])
VALUE_PATTERN = whole(LABEL_MAP["additionalProperties"]["pattern"])
LABEL_TEXT = st.text(alphabet="aZ09-_./\n", max_size=80) | st.from_regex(
    KEY_PATTERN, fullmatch=True
)


def accepts_labels(labels: dict[str, str]) -> bool:
    try:
        WorkloadSelector.model_validate({"matchLabels": labels})
    except pydantic.ValidationError:
        return False
    return True


@given(LABEL_TEXT)
def test_the_label_key_pattern_is_the_models_rule(key: str) -> None:
    prefix, _, _ = key.rpartition("/")
    if len(prefix) > 253:  # the one limit a pattern cannot state (see openapi.py)
        return

    assert bool(KEY_PATTERN.fullmatch(key)) == accepts_labels({key: ""}), key


@given(LABEL_TEXT)
def test_the_label_value_pattern_is_the_models_rule(value: str) -> None:
    assert bool(VALUE_PATTERN.fullmatch(value)) == accepts_labels({"k": value}), value


@pytest.mark.parametrize("path", ["/v1/resources/{kind}", "/v1/resources/{kind}/{name}"])
def test_path_kinds_are_the_plurals(path: str) -> None:
    parameters = DOCUMENT["components"]["parameters"]

    assert parameters["kind"]["schema"]["enum"] == [
        "accesspolicies",
        "exports",
        "imports",
        "peers",
        "privilegedaccesspolicies",
    ]
    assert {"$ref": "#/components/parameters/kind"} in DOCUMENT["paths"][path]["get"]["parameters"]


def test_an_import_source_needs_only_its_peer_as_the_models_fill_in_the_rest() -> None:
    from clusterlink.api import resource_from_dict

    imported = resource_from_dict(
        {
            "apiVersion": "clusterlink.net/v1alpha1",
            "kind": "Import",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"port": 0, "sources": [{"peer": "b"}]},
        }
    )
    source = imported.spec.sources[0]  # type: ignore[attr-defined]
    assert (source.export_name, source.export_namespace) == ("web", "shop")
    assert SCHEMAS["ImportSource"]["required"] == ["peer"]
