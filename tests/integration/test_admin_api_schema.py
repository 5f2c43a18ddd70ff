"""The admin API against its own OpenAPI description: generated requests, checked answers.

Schemathesis reads ``GET /v1/openapi.json`` from a real gateway and generates requests for
every operation: valid ones (positive mode) and ones that break the description on purpose
(negative mode: wrong types, missing fields, bad parameters). Every answer must be no server
error, a status the operation documents, JSON, and match the documented schema (errors
included). So the description has to be accurate for the run to pass, and the gateway has to
answer garbage with a documented 4xx.

Why not ``@schema.parametrize()``: it needs the schema when the module is imported, and the
fixture-based form does not work with the pytest we run; so each operation gets a plain
Hypothesis test built from ``operation.as_strategy`` inside one test per mode, and failures
are collected across operations.

Keeping the gateway to itself: generated Peers would make it send heartbeats to whatever
hosts the generator made up, and generated Imports would open listeners on arbitrary ports.
So before each request every Peer gateway becomes a loopback port that refuses connections,
and every Import port becomes 0 (a leased port). Nothing else is changed, and those fields
have deterministic tests of their own (``test_admin_api_errors``).

Bounded: ``MAX_EXAMPLES`` per operation and mode keeps both modes together at about half a
minute on a developer machine. ``negative_data_rejection`` (does the gateway refuse everything the
description forbids?) is not among the checks: the rewriting above turns some invalid
requests valid (a Peer's mutated ``host`` becomes loopback again), and unknown query
parameters are ignored by design, as most HTTP APIs do. Invalid documents have their own
deterministic tests (``test_admin_input``, ``test_admin_api_errors``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.admin_http import admin_session, base_url, call, tls_kwargs
from tests.integration.conftest import StartGateway
from tests.integration.gateways import Gateway

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def gateway(start_gateway: StartGateway) -> Gateway:
    return start_gateway("a")


@pytest.fixture(scope="module")
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: every connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def session(gateway: Gateway) -> Iterator[requests.Session]:
    with admin_session(gateway) as session:
        yield session


@pytest.fixture(scope="module")
def api(gateway: Gateway) -> Any:
    answer = call(gateway, "GET", "/v1/openapi.json", cert_dir=gateway.peer_dir / "admin")
    assert answer.status == 200, answer
    return schemathesis.openapi.from_dict(answer.body)


def keep_on_loopback(body: Any, refusing_port: int) -> None:
    """Point generated Peers at ``refusing_port`` and make generated Imports lease a port."""
    documents = body.get("documents") if isinstance(body, dict) else None
    for document in documents if isinstance(documents, list) else ():
        spec = document.get("spec") if isinstance(document, dict) else None
        if not isinstance(spec, dict):
            continue
        if document.get("kind") == "Import" and "port" in spec:
            spec["port"] = 0
        gateways = spec.get("gateways") if document.get("kind") == "Peer" else None
        for gateway in gateways if isinstance(gateways, list) else ():
            if isinstance(gateway, dict):
                gateway.update(host="127.0.0.1", port=refusing_port)


def has_input(operation: Any) -> bool:
    """Whether negative mode has anything to break (``GET /v1/status`` has no input)."""
    return bool(operation.path_parameters or operation.query or operation.body)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_documented_answers(
    gateway: Gateway,
    api: Any,
    session: requests.Session,
    refusing_port: int,
    mode: GenerationMode,
) -> None:
    transport = tls_kwargs(gateway, gateway.peer_dir / "admin")
    failures: list[str] = []
    tried: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not has_input(operation):
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @SETTINGS
        def answers_as_documented(case: Any) -> None:
            keep_on_loopback(case.body, refusing_port)
            response = case.call(base_url=base_url(gateway), session=session, **transport)
            case.validate_response(response, checks=CHECKS)

        try:
            answers_as_documented()
        except (AssertionError, hypothesis.errors.HypothesisException, ExceptionGroup) as exc:
            failures.append(f"{operation.label}:\n{exc}")
        tried.append(operation.label)

    assert not failures, "\n\n".join(failures)
    with_input = {
        "POST /v1/apply",
        "POST /v1/delete",
        "GET /v1/resources/{kind}",
        "GET /v1/resources/{kind}/{name}",
        "DELETE /v1/resources/{kind}/{name}",
        "POST /v1/invitations",
        "POST /v1/link",
        "GET /v1/flows",
        "POST /v1/explain",
    }
    without_input = {"GET /v1/status", "GET /v1/openapi.json"}
    expected = with_input | (without_input if mode is GenerationMode.POSITIVE else set())
    assert sorted(tried) == sorted(expected)
