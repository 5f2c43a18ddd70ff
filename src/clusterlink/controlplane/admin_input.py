"""What an admin API request may carry, checked before anything acts on it.

The HTTP layer (``admin``) hands over raw values (the body's bytes, the path's kind and name,
the query's strings) and gets typed values back, or an error that names the offending field:

- the request's own shape is wrong (the body is not JSON, not an object, lacks ``documents``
  or has fields besides it; a query parameter or a name that no resource can have):
  ``BadRequest``, answered ``400``;
- a document in the body is invalid: ``ValidationError``, answered ``422``. Its ``field`` is
  the JSON path into the request body (``documents[1].spec.port``), so a program finds the
  spot without parsing the message, and the message starts with that same path;
- the path names a kind that does not exist: ``NotFoundError``, answered ``404`` like any
  other unknown route.

Nothing here does I/O or touches the store, so every refusal is a unit test of plain values.
Names are checked with the same rules (and the same wording) as names inside documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import pydantic

from clusterlink.api import (
    KINDS,
    Resource,
    ResourceKey,
    key_of,
    kind_info,
    plural,
    resource_from_dict,
)
from clusterlink.api.names import NamespaceName, PeerNameField, ResourceName
from clusterlink.errors import BadRequest, NotFoundError, ValidationError
from clusterlink.protocol.wire import is_text

__all__ = [
    "BODY_FIELDS",
    "parse_body",
    "parse_close_tunnels",
    "parse_documents_body",
    "parse_dry_run",
    "parse_key",
    "parse_kind",
    "parse_namespace",
]

BODY_FIELDS: Final = ("documents",)
"""The top-level fields of an apply or delete body; anything else is refused, not ignored."""

_BY_PLURAL: Final = {plural(kind): kind for kind in KINDS}
_PLURALS: Final = ", ".join(_BY_PLURAL)
_NAMESPACE: Final = pydantic.TypeAdapter(NamespaceName)
_RESOURCE_NAME: Final = pydantic.TypeAdapter(ResourceName)
_PEER_NAME: Final = pydantic.TypeAdapter(PeerNameField)
_BOOLEANS: Final = {"true": True, "false": False}

_Name = TypeVar("_Name", bound=str)
_Body = TypeVar("_Body", bound=pydantic.BaseModel)


# --- the body of apply and delete --------------------------------------------------------------


def parse_documents_body(body: bytes) -> list[Resource]:
    """``{"documents": [document, ...]}`` -> validated resources, all or none.

    Two documents naming the same resource are refused too: which one should win?
    """
    documents = _documents_of(_json_object(body))
    resources: list[Resource] = []
    first_at: dict[ResourceKey, int] = {}
    for index, document in enumerate(documents):
        try:
            resource = resource_from_dict(document)
        except ValidationError as exc:
            raise _in_document(index, exc) from None
        key = key_of(resource)
        if key in first_at:
            field = f"documents[{index}].metadata.name"
            raise _invalid(
                field,
                f"{key} appears twice in one request (also documents[{first_at[key]}])",
            )
        first_at[key] = index
        resources.append(resource)
    return resources


def parse_body(body: bytes, model: type[_Body], *, shape: str) -> _Body:
    """A request body that is one small object (not documents), e.g. an invitation's;
    ``shape`` shows it in the message for a body that is no object at all.

    Any problem is the request's own shape, so it is ``BadRequest`` with ``field`` the JSON
    path of the first offending value (``gateways[0].port``).
    """
    data = _json_object(body, shape)
    where = _not_unicode(data, "")
    if where is not None:
        raise BadRequest(f"{where.lstrip('.')}: is not valid Unicode", field=where.lstrip("."))
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        problem = error["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{field or 'body'}: {problem}", field=field or None) from None


def _json_object(body: bytes, shape: str = '{"documents": [...]}') -> dict[str, Any]:
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8 text: {exc.reason}") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    except RecursionError:
        # json.loads recurses per nesting level: "[[[[..." from a hostile client is not a 500.
        raise BadRequest("request body is nested too deeply to be resource documents") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object {shape}, got {_json_type(data)}")
    return data


def _documents_of(body: Mapping[str, Any]) -> list[Any]:
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]!r} in the request body; it takes only 'documents'",
            field=unknown[0],
        )
    if "documents" not in body:
        raise BadRequest(
            "request body has no 'documents'; send {\"documents\": [document, ...]}",
            field="documents",
        )
    documents = body["documents"]
    if not isinstance(documents, list):
        raise BadRequest(
            f"documents must be a list of resource documents, got {_json_type(documents)}",
            field="documents",
        )
    for index, document in enumerate(documents):
        where = _not_unicode(document, f"documents[{index}]")
        if where is not None:
            raise _invalid(where, "is not valid Unicode: it holds a lone surrogate (\\udXXX)")
    return documents


def _not_unicode(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) in ``value`` that cannot be UTF-8.

    JSON lets ``"\\udfff"`` through as a lone surrogate; no document may hold one, since the
    store (and every log line) writes UTF-8. Iterative: the body may nest as deep as the JSON
    parser allows, and a recursive walk on top of the request's stack would not fit.
    """
    pending: list[tuple[str, Any]] = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if not is_text(item):
                return where
        elif isinstance(item, dict):
            if not all(is_text(key) for key in item):
                return where
            pending.extend((f"{where}.{key}", child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            pending.extend((f"{where}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _in_document(index: int, exc: ValidationError) -> ValidationError:
    """``exc`` about one document, re-worded to lead with its path in the request body.

    ``resource_from_dict`` words an error ``<resource>: <field>: <problem>`` (or
    ``<resource>: <problem>``), where ``<resource>`` names the document (``Export default/db``)
    as far as it can be read, and is ``document`` if nothing can be.
    """
    where = f"documents[{index}]"
    field = f"{where}.{exc.field}" if exc.field else where
    resource, separator, problem = exc.message.partition(f": {exc.field}: " if exc.field else ": ")
    if not separator:
        return _invalid(field, exc.message)
    return _invalid(field, problem, about=resource)


def _invalid(field: str, problem: str, *, about: str = "") -> ValidationError:
    named = f"{field} ({about})" if about and about != "document" else field
    error = ValidationError(f"{named}: {problem}")
    error.field = field  # ValidationError(field=...) would put the path in front a second time
    return error


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


# --- the path and the query --------------------------------------------------------------------


def parse_kind(text: str) -> str:
    """The canonical kind of a path segment; the lower-case plural is the documented form."""
    kind = _BY_PLURAL.get(text)
    if kind is not None:
        return kind
    try:
        return kind_info(text).name
    except ValidationError:
        raise NotFoundError(
            f"no resource kind {text!r} in this API; KIND is one of {_PLURALS}"
        ) from None


def parse_key(kind_text: str, name: str, namespace: str | None) -> ResourceKey:
    """The resource a path names; ``namespace`` defaults to ``default`` and is dropped for a
    cluster-scoped kind (but must still be a valid namespace if given)."""
    kind = parse_kind(kind_text)
    checked: str = (
        _check(_PEER_NAME, "name", name) if kind == "Peer" else _check(_RESOURCE_NAME, "name", name)
    )
    return ResourceKey.of(kind, checked, parse_namespace(namespace) or "default")


def parse_namespace(value: str | None) -> str | None:
    """The ``namespace`` query parameter, None if absent. Empty is refused rather than read
    as absent: ``?namespace=`` is more likely an unset variable in a script than a wish."""
    if value is None:
        return None
    if not value:
        raise BadRequest(
            "namespace must not be empty; leave the parameter out to mean the default "
            "(every namespace for a list, 'default' for one resource)",
            field="namespace",
        )
    return _check(_NAMESPACE, "namespace", value)


def parse_close_tunnels(value: str | None) -> bool:
    """``closeTunnels=true|false``; anything else is refused rather than read as false."""
    return _parse_flag("closeTunnels", value)


def parse_dry_run(value: str | None) -> bool:
    """``dryRun=true|false``; anything else is refused: a typo must never make a change."""
    return _parse_flag("dryRun", value)


def _parse_flag(field: str, value: str | None) -> bool:
    if value is None:
        return False
    try:
        return _BOOLEANS[value]
    except KeyError:
        raise BadRequest(f"{field} must be true or false, got {value!r}", field=field) from None


def _check(rule: pydantic.TypeAdapter[_Name], field: str, value: str) -> _Name:
    try:
        return rule.validate_python(value)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{field} {value!r} {problem}", field=field) from None
