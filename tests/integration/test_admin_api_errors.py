"""Malformed and invalid admin requests get a clear 4xx JSON answer, never a 500.

The request's own shape (body, query, a name no resource can have) is a ``400`` naming the
part; an invalid document is a ``422`` whose ``field`` is its path in the body; unknown routes
and kinds are ``404``, wrong methods ``405`` (with ``Allow``), oversized bodies ``413``. Every
answer here is checked whole, since scripts read these bodies. All requests are made with the
right admin certificate against a real gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.admin_http import Answer, call
from tests.integration.conftest import StartGateway
from tests.integration.documents import export, peer
from tests.integration.gateways import Gateway

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 8 * 1024 * 1024  # docs/admin-api.md
DNS_NAME_RULE = (
    "must be a lower-case DNS name: a-z, 0-9, '-' and '.', starting and ending with a letter "
    "or digit, at most 253 characters"
)


@pytest.fixture(scope="module")
def gateway(start_gateway: StartGateway) -> Gateway:
    return start_gateway("a")


def admin(gateway: Gateway) -> Path:
    return gateway.peer_dir / "admin"


def send(gateway: Gateway, method: str, path: str, **kwargs: Any) -> Answer:
    return call(gateway, method, path, cert_dir=admin(gateway), **kwargs)


def malformed(message: str, field: str | None = None) -> dict[str, str]:
    body = {"reason": "malformed", "message": message}
    return body if field is None else {**body, "field": field}


NOT_AN_OBJECT = 'request body must be a JSON object {"documents": [...]}, got '
NOT_A_LIST = "documents must be a list of resource documents, got "
NOT_JSON = "request body is not JSON: Expecting value: line 1 column 1 (char 0)"
MALFORMED_BODIES = {
    "not-json": (b"not json", malformed(NOT_JSON)),
    "empty": (b"", malformed(NOT_JSON)),
    "array": (b"[1, 2]", malformed(NOT_AN_OBJECT + "an array")),
    "string": (b'"documents"', malformed(NOT_AN_OBJECT + "a string")),
    "no-documents": (
        b"{}",
        malformed(
            "request body has no 'documents'; send {\"documents\": [document, ...]}", "documents"
        ),
    ),
    "documents-object": (b'{"documents": {}}', malformed(NOT_A_LIST + "an object", "documents")),
    "documents-null": (b'{"documents": null}', malformed(NOT_A_LIST + "null", "documents")),
    "unknown-field": (
        b'{"documents": [], "dryRun": true}',
        malformed(
            "unknown field 'dryRun' in the request body; it takes only 'documents'", "dryRun"
        ),
    ),
}


@pytest.mark.parametrize("case", MALFORMED_BODIES)
@pytest.mark.parametrize("path", ["/v1/apply", "/v1/delete"])
def test_a_malformed_body_is_400_naming_the_part(gateway: Gateway, path: str, case: str) -> None:
    raw, expected = MALFORMED_BODIES[case]

    answer = send(gateway, "POST", path, raw=raw, headers={"content-type": "application/json"})

    assert (answer.status, answer.body) == (400, expected)


def test_a_body_that_is_not_utf8_is_400(gateway: Gateway) -> None:
    answer = send(gateway, "POST", "/v1/apply", raw=b'{"documents": [\xc3\x28]}')

    assert answer.status == 400
    assert answer.body["reason"] == "malformed"
    assert answer.body["message"].startswith("request body is not UTF-8 text: "), answer


NAMESPACE_RULE = (
    "must be a lower-case DNS label: a-z, 0-9 and '-', starting and ending with a letter or "
    "digit, at most 63 characters"
)
PEER_NAME_RULE = (
    "must be a DNS name made of dot-separated labels (a-z, 0-9 and '-', each starting and "
    "ending with a letter or digit, at most 63 characters each, 253 in all)"
)
LONG_LABEL = "p" * 64
BAD_PARAMETERS = {
    "close-tunnels-yes": (
        "POST",
        "/v1/apply?closeTunnels=yes",
        malformed("closeTunnels must be true or false, got 'yes'", "closeTunnels"),
    ),
    "close-tunnels-1": (
        "DELETE",
        "/v1/resources/exports/x?closeTunnels=1",
        malformed("closeTunnels must be true or false, got '1'", "closeTunnels"),
    ),
    "namespace": (
        "GET",
        "/v1/resources/exports?namespace=Team_A",
        malformed(f"namespace 'Team_A' {NAMESPACE_RULE}", "namespace"),
    ),
    "empty-namespace": (
        "GET",
        "/v1/resources/exports?namespace=",
        malformed(
            "namespace must not be empty; leave the parameter out to mean the default "
            "(every namespace for a list, 'default' for one resource)",
            "namespace",
        ),
    ),
    "namespace-of-a-cluster-kind": (
        "GET",
        "/v1/resources/peers/x?namespace=a.b",
        malformed(f"namespace 'a.b' {NAMESPACE_RULE}", "namespace"),
    ),
    "name": (
        "GET",
        "/v1/resources/exports/Echo",
        malformed(f"name 'Echo' {DNS_NAME_RULE}", "name"),
    ),
    "name-with-slash": (
        "DELETE",
        "/v1/resources/imports/a%2Fb",
        malformed(f"name 'a/b' {DNS_NAME_RULE}", "name"),
    ),
    "peer-name": (
        "GET",
        f"/v1/resources/peers/{LONG_LABEL}",
        malformed(f"name '{LONG_LABEL}' {PEER_NAME_RULE}", "name"),
    ),
}


@pytest.mark.parametrize("case", BAD_PARAMETERS)
def test_a_bad_parameter_is_400_naming_it(gateway: Gateway, case: str) -> None:
    method, path, expected = BAD_PARAMETERS[case]
    body: dict[str, Any] | None = {"documents": []} if method == "POST" else None

    answer = send(gateway, method, path, body=body)

    assert (answer.status, answer.body) == (400, expected)


def test_a_bad_parameter_is_refused_before_anything_changes(gateway: Gateway) -> None:
    documents = {"documents": [export("early", "default", 80)]}

    answer = send(gateway, "POST", "/v1/apply?closeTunnels=sure", body=documents)

    assert answer.status == 400
    assert send(gateway, "GET", "/v1/resources/exports/early").status == 404


def invalid(message: str, field: str) -> dict[str, str]:
    return {"reason": "invalid", "message": message, "field": field}


OK_EXPORT = export("first", "errors", 8080)


def nested(depth: int) -> list[Any]:
    """``[[[...]]]``, ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


KINDS = "Peer, Export, Import, AccessPolicy, PrivilegedAccessPolicy"
INVALID_DOCUMENTS = {
    "port": (
        [OK_EXPORT, export("second", "errors", 70000)],
        invalid(
            "documents[1].spec.port (Export errors/second): must be at most 65535 (got 70000)",
            "documents[1].spec.port",
        ),
    ),
    "not-a-mapping": (
        [OK_EXPORT, 7],
        invalid(
            "documents[1]: expected a mapping with apiVersion, kind, metadata and spec, got int",
            "documents[1]",
        ),
    ),
    "kind": (
        [{**OK_EXPORT, "kind": "Widget"}],
        invalid(
            f"documents[0].kind (Widget first): unknown kind 'Widget'; accepted kinds: {KINDS}",
            "documents[0].kind",
        ),
    ),
    "nested-field": (
        [OK_EXPORT, peer("b", ("127.0.0.1", 0))],
        invalid(
            "documents[1].spec.gateways[0].port (Peer b): must be at least 1 (got 0)",
            "documents[1].spec.gateways[0].port",
        ),
    ),
    "deeply-nested": (
        [OK_EXPORT, {**OK_EXPORT, "spec": {"host": nested(900), "port": 1}}],
        invalid(
            "documents[1].spec.host (Export errors/first): must be a string",
            "documents[1].spec.host",
        ),
    ),
    "lone-surrogate": (
        [OK_EXPORT, {**OK_EXPORT, "metadata": {"name": "s", "annotations": {"a": "\udfff"}}}],
        invalid(
            "documents[1].metadata.annotations.a: is not valid Unicode: it holds a lone "
            "surrogate (\\udXXX)",
            "documents[1].metadata.annotations.a",
        ),
    ),
    "twice": (
        [OK_EXPORT, export("first", "errors", 9090)],
        invalid(
            "documents[1].metadata.name: export errors/first appears twice in one request "
            "(also documents[0])",
            "documents[1].metadata.name",
        ),
    ),
}


@pytest.mark.parametrize("case", INVALID_DOCUMENTS)
@pytest.mark.parametrize("path", ["/v1/apply", "/v1/delete"])
def test_an_invalid_document_is_422_naming_its_path_and_nothing_is_stored(
    gateway: Gateway, path: str, case: str
) -> None:
    documents, expected = INVALID_DOCUMENTS[case]

    answer = send(gateway, "POST", path, body={"documents": documents})

    assert (answer.status, answer.body) == (422, expected)
    assert send(gateway, "GET", "/v1/resources/exports/first?namespace=errors").status == 404


NO_ROUTE = "no such route; GET /v1/openapi.json lists the routes"
NO_KIND = (
    "no resource kind 'widgets' in this API; KIND is one of "
    "peers, exports, imports, accesspolicies, privilegedaccesspolicies"
)
MISSING = {
    "route": ("GET", "/v1/nosuch", f"GET /v1/nosuch: {NO_ROUTE}"),
    "prefix": ("GET", "/v1/resources", f"GET /v1/resources: {NO_ROUTE}"),
    "kind": ("GET", "/v1/resources/widgets", NO_KIND),
    "kind-delete": ("DELETE", "/v1/resources/widgets/x", NO_KIND),
    "import": (
        "GET",
        "/v1/resources/imports/nosuch?namespace=errors",
        "import errors/nosuch not found",
    ),
    "peer": ("GET", "/v1/resources/peers/nosuch", "peer nosuch not found"),
}


@pytest.mark.parametrize("case", MISSING)
def test_what_does_not_exist_is_404(gateway: Gateway, case: str) -> None:
    method, path, message = MISSING[case]

    answer = send(gateway, method, path)

    assert (answer.status, answer.body) == (404, {"reason": "not-found", "message": message})


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/status", "GET, HEAD"),
        ("GET", "/v1/apply", "POST"),
        ("PATCH", "/v1/resources/exports/x", "DELETE, GET, HEAD"),
    ],
)
def test_a_wrong_method_is_405_saying_which_are_allowed(
    gateway: Gateway, method: str, path: str, allowed: str
) -> None:
    answer = send(gateway, method, path)

    assert answer.status == 405
    assert answer.body == {
        "reason": "method-not-allowed",
        "message": f"{method} {path}: method not allowed; {path} takes {allowed}",
    }
    assert answer.headers["Allow"] == allowed


def test_an_oversized_body_is_413_and_the_gateway_keeps_serving(gateway: Gateway) -> None:
    answer = send(gateway, "POST", "/v1/apply", raw=b" " * (MAX_BODY_BYTES + 1))

    assert (answer.status, answer.body) == (
        413,
        {
            "reason": "too-large",
            "message": "POST /v1/apply: the request body is larger than 8 MiB; "
            "apply the documents in several smaller requests",
        },
    )
    assert send(gateway, "GET", "/v1/status").status == 200


def test_a_body_just_under_the_limit_is_read(gateway: Gateway) -> None:
    padding = b" " * (MAX_BODY_BYTES - 20)

    answer = send(gateway, "POST", "/v1/apply", raw=b'{"documents": []}' + padding)

    assert (answer.status, answer.body) == (200, {"results": []})
