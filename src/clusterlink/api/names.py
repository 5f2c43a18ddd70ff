"""Name rules for resources, namespaces, peers and labels.

Names end up in URLs, SQL keys, certificate SANs and Kubernetes objects, so they follow the
Kubernetes rules exactly (DNS-1123 subdomain for names, DNS-1123 label for namespaces, the
label-key syntax for labels); anything the Kubernetes API server would refuse is refused here
too, so the same documents work in both modes.

The checks raise ``ValueError`` because pydantic turns that into a located error; code outside
a model calls :func:`validate_peer_name`, which raises our own ``ValidationError``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from clusterlink.errors import ValidationError
from clusterlink.ids import (
    DNS_LABEL,
    DNS_LABEL_MAX,
    DNS_SUBDOMAIN,
    DNS_SUBDOMAIN_MAX,
    PeerName,
    is_dns_label,
    is_dns_subdomain,
)

__all__ = [
    "HostField",
    "LabelKey",
    "LabelMap",
    "NamespaceName",
    "PeerName",
    "PeerNameField",
    "ResourceName",
    "validate_peer_name",
]

_LABEL_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

_SUBDOMAIN_RULE = (
    "must be a lower-case DNS name: a-z, 0-9, '-' and '.', starting and ending with a letter "
    "or digit, at most 253 characters"
)
_LABEL_RULE = (
    "must be a lower-case DNS label: a-z, 0-9 and '-', starting and ending with a letter or "
    "digit, at most 63 characters"
)
_PEER_RULE = (
    "must be a DNS name made of dot-separated labels (a-z, 0-9 and '-', each starting and "
    "ending with a letter or digit, at most 63 characters each, 253 in all)"
)
_LABEL_PART_RULE = (
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
    "at most 63 characters"
)


def _is_label_part(value: str) -> bool:
    return len(value) <= 63 and _LABEL_NAME_RE.fullmatch(value) is not None


def _resource_name(value: str) -> str:
    if not is_dns_subdomain(value):
        raise ValueError(_SUBDOMAIN_RULE)
    return value


def _namespace(value: str) -> str:
    if not is_dns_label(value):
        raise ValueError(_LABEL_RULE)
    return value


def _peer_name(value: str) -> PeerName:
    if not is_dns_subdomain(value) or any(len(label) > DNS_LABEL_MAX for label in value.split(".")):
        raise ValueError(_PEER_RULE)
    return PeerName(value)


def _label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        raise ValueError(f"label key {key!r}: the prefix before '/' {_SUBDOMAIN_RULE}")
    if not _is_label_part(name):
        raise ValueError(f"label key {key!r}: the name must have {_LABEL_PART_RULE}")
    return key


def _labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        _label_key(key)
        if value and not _is_label_part(value):
            raise ValueError(
                f"label {key!r}: the value {value!r} must be empty or have {_LABEL_PART_RULE}"
            )
    return labels


_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?")
_HOST_CHARS = re.compile(r"[A-Za-z0-9_.:%-]+")  # what the JSON schema can say of both forms


def _host(value: str) -> str:
    """An IP address, or a DNS host name: what a gateway can connect to. Anything else
    (spaces, control characters, a URL, brackets) would only fail later, at connect time,
    with a less clear message."""
    if not value:
        raise ValueError("must not be empty")
    if value.startswith("[") and value.endswith("]"):
        raise ValueError("must be written without brackets (e.g. ::1, not [::1])")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(value)
        return value
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(
            "must be an IP address or a DNS host name (labels of letters, digits, '-' and '_' "
            "up to 63 characters, joined by '.')"
        )
    return value


def validate_peer_name(name: str) -> PeerName:
    """Return ``name`` as a :data:`PeerName`, or raise ``ValidationError`` saying why not."""
    try:
        return _peer_name(name)
    except ValueError as exc:
        raise ValidationError(f"peer name {name!r} {exc}") from exc


def _schema(pattern: re.Pattern[str], max_length: int) -> WithJsonSchema:
    """What the check means in JSON schema terms, for CRDs and OpenAPI."""
    return WithJsonSchema(
        {"type": "string", "maxLength": max_length, "pattern": f"^{pattern.pattern}$"}
    )


ResourceName = Annotated[
    str, AfterValidator(_resource_name), _schema(DNS_SUBDOMAIN, DNS_SUBDOMAIN_MAX)
]
HostField = Annotated[str, AfterValidator(_host), _schema(_HOST_CHARS, 253)]
NamespaceName = Annotated[str, AfterValidator(_namespace), _schema(DNS_LABEL, DNS_LABEL_MAX)]
PeerNameField = Annotated[
    PeerName, AfterValidator(_peer_name), _schema(DNS_SUBDOMAIN, DNS_SUBDOMAIN_MAX)
]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelMap = Annotated[dict[str, str], AfterValidator(_labels)]
