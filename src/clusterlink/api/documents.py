"""Resource documents: text and dicts in, validated resources out, and back again.

All user input goes through :func:`parse_documents` or :func:`resource_from_dict`, so this is
the one place where pydantic's error reports become our one-line ``ValidationError``: it names
the document, the resource and the dotted path of the first bad field
(``document 2 (Import default/bad): spec.port: must be at most 65535``), and ``error.field``
carries the path alone for programs.

A batch is all-or-nothing: :func:`parse_documents` returns only when every document is valid.
The output side (:func:`to_dict` and the dumpers) is the canonical wire form: camelCase, no
``None`` values, keys in the order apiVersion, kind, metadata, spec, status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from pydantic_core import ErrorDetails

from clusterlink.api.kinds import KINDS, is_namespaced
from clusterlink.api.resources import API_VERSION, UNSUPPORTED_FIELDS, Resource
from clusterlink.errors import ValidationError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "dump_json",
    "dump_objects",
    "dump_yaml",
    "parse_documents",
    "resource_from_dict",
    "to_dict",
    "with_status",
]

R = TypeVar("R", bound=Resource)


def parse_documents(text: str) -> list[Resource]:
    """Every resource in ``text``: multi-document YAML, JSON, a JSON array, ``{"items": [...]}``
    or a Kubernetes ``kind: List``. Empty documents are skipped; no documents gives ``[]``.
    """
    return [_resource(entry, where) for where, entry in _entries(_load(text))]


def resource_from_dict(data: object) -> Resource:
    """Validate one wire-form document (e.g. a JSON request body) into its kind's model."""
    return _resource(data, None)


def with_status(resource: R, status: Mapping[str, Any] | None) -> R:
    """``resource`` with ``status`` (wire form) in place of its own, validated for its kind."""
    data = to_dict(resource, include_status=False)
    if status is not None:
        data["status"] = dict(status)
    return _validate(type(resource), data, _context(data, None))


def to_dict(resource: Resource, *, include_status: bool = True) -> dict[str, Any]:
    return resource.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        exclude=None if include_status else {"status"},
    )


def dump_yaml(resources: Sequence[Resource], *, include_status: bool = True) -> str:
    """Multi-document YAML, one document per resource; applying it again changes nothing."""
    import yaml  # here and below: YAML is for documents, not for a gateway's start

    docs = [to_dict(resource, include_status=include_status) for resource in resources]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def dump_objects(objects: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML of plain objects (CRDs, manifests) as built: keys in the order
    given, long strings (base64, patterns) on one line, and no ``&id001`` anchors where two
    places happen to share one list, which readers of a manifest would not expect."""
    import yaml

    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump_all(
        [dict(obj) for obj in objects],
        Dumper=NoAliases,
        sort_keys=False,
        width=1_000_000,
        allow_unicode=True,
    )


def dump_json(resources: Resource | Sequence[Resource], *, include_status: bool = True) -> str:
    """One resource as an object; a sequence as ``{"items": [...]}`` (as ``get -o json``)."""
    if isinstance(resources, Resource):
        data: dict[str, Any] = to_dict(resources, include_status=include_status)
    else:
        data = {"items": [to_dict(r, include_status=include_status) for r in resources]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- input ------------------------------------------------------------------------------------


def _load(text: str) -> list[object]:
    """Documents of the YAML stream. JSON is tried first when it looks like JSON, because
    tab-indented JSON (``jq --tab``, Go's ``MarshalIndent``) is not valid YAML.
    """
    import yaml

    json_error: json.JSONDecodeError | None = None
    if text.lstrip()[:1] in ("{", "["):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            json_error = exc
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        if json_error is not None:
            raise ValidationError(
                f"invalid JSON at line {json_error.lineno}, column {json_error.colno}: "
                f"{json_error.msg}"
            ) from json_error
        raise ValidationError(_describe_yaml_error(exc)) from exc


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"invalid YAML{where}: {exc.problem or exc.context or 'syntax error'}"
    return f"invalid YAML: {exc}"


def _entries(docs: list[object]) -> Iterator[tuple[str, object]]:
    """(where, document) pairs with lists flattened; ``where`` is how errors name it."""
    for number, doc in enumerate(docs, 1):
        where = f"document {number}"
        items = _list_items(doc, where)
        if items is None:
            if doc is not None:
                yield where, doc
            continue
        prefix = f"{where}, " if len(docs) > 1 else ""
        for index, item in enumerate(items, 1):
            if item is not None:
                yield f"{prefix}item {index}", item


def _list_items(doc: object, where: str) -> list[object] | None:
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, dict) or "items" not in doc or "spec" in doc:
        return None
    if not str(doc.get("kind", "List")).endswith("List"):
        return None
    items = doc["items"]
    if not isinstance(items, list):
        raise ValidationError(f"{where}: items: must be a list", field="items")
    return items


def _resource(data: object, where: str | None) -> Resource:
    context = _context(data, where)
    if not isinstance(data, dict):
        raise _invalid(
            context,
            None,
            f"expected a mapping with apiVersion, kind, metadata and spec, "
            f"got {type(data).__name__}",
        )
    kind = data.get("kind")
    accepted = ", ".join(KINDS)
    if kind is None:
        raise _invalid(context, "kind", f"required; one of {accepted}")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise _invalid(context, "kind", f"unknown kind {kind!r}; accepted kinds: {accepted}")
    if "apiVersion" not in data:
        raise _invalid(context, "apiVersion", f"required; must be {API_VERSION!r}")
    return _validate(model, data, context)


def _validate(model: type[R], data: Mapping[str, Any], context: str) -> R:
    # Strict: a document is data, not something to guess at: JSON ``true`` or ``"80"`` is not
    # a port. (YAML and JSON numbers still arrive as the right Python types.)
    try:
        return model.model_validate(data, strict=True, by_alias=True, by_name=False)
    except pydantic.ValidationError as exc:
        field, problem = _describe(_first(exc.errors()))
        raise _invalid(context, field, problem) from exc


def _context(data: object, where: str | None) -> str:
    """``document 2 (Import default/db)``, or as much of it as the data allows."""
    ident = ""
    if isinstance(data, dict) and isinstance(data.get("kind"), str):
        kind, metadata = data["kind"], data.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        ident = kind
        if isinstance(name, str):
            namespace = metadata.get("namespace", "default") if isinstance(metadata, dict) else ""
            scoped = kind in KINDS and is_namespaced(kind) and isinstance(namespace, str)
            ident += f" {namespace}/{name}" if scoped else f" {name}"
    if where is None:
        return ident or "document"
    return f"{where} ({ident})" if ident else where


def _invalid(context: str, field: str | None, problem: str) -> ValidationError:
    # ValidationError's own str() would put the field first; ours leads with the document.
    error = ValidationError(f"{context}: {field}: {problem}" if field else f"{context}: {problem}")
    error.field = field
    return error


# --- pydantic errors to one line --------------------------------------------------------------

_PROBLEMS = {
    "less_than_equal": "must be at most {le}",
    "greater_than_equal": "must be at least {ge}",
    "string_too_short": "must not be empty",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
_SCALARS = (str, int, float, bool)


def _first(errors: list[ErrorDetails]) -> ErrorDetails:
    """The error to report; an unsupported field of the original explains the others.

    (``workloadSets`` in place of ``workloadSelector`` also makes the latter missing.)
    """
    unsupported = (e for e in errors if e["loc"] and str(e["loc"][-1]) in UNSUPPORTED_FIELDS)
    return next(unsupported, errors[0])


def _describe(error: ErrorDetails) -> tuple[str | None, str]:
    """(dotted field path, problem) for pydantic's error, worded for people."""
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx", {})
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    field = path.removeprefix(".") or None
    if kind == "extra_forbidden":
        return field, UNSUPPORTED_FIELDS.get(str(loc[-1]), "unknown field")
    if kind == "missing":
        return field, "required"
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        problem = "must not be empty" if count == 1 else f"must have at least {count} items"
    elif kind in _PROBLEMS:
        problem = _PROBLEMS[kind].format(**ctx)
    else:
        problem = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    value = error.get("input")
    if isinstance(value, _SCALARS):
        shown = repr(value)
        problem += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return field, problem
