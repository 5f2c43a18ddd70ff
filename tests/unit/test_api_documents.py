"""Documents in and out: every accepted input form, the canonical output, and error messages
that name the document and the field (DESIGN.md §4: an invalid resource is rejected whole).
"""

import json

import pytest
import yaml

from clusterlink.api import (
    AccessPolicy,
    Export,
    Import,
    Peer,
    PrivilegedAccessPolicy,
    dump_json,
    dump_yaml,
    parse_documents,
    resource_from_dict,
    to_dict,
    with_status,
)
from clusterlink.errors import ValidationError

HEAD = "apiVersion: clusterlink.net/v1alpha1\n"

PEER = (
    HEAD
    + """kind: Peer
metadata: {name: site-b, labels: {env: prod}}
spec:
  gateways: [{host: b.example.com, port: 8443}, {host: 10.0.0.2, port: 443}]
"""
)
EXPORT = (
    HEAD
    + """kind: Export
metadata: {name: db, namespace: prod, annotations: {owner: "team a"}}
spec: {host: db.prod.svc, port: 5432}
"""
)
IMPORT = (
    HEAD
    + """kind: Import
metadata: {name: db, namespace: prod}
spec:
  port: 0
  sources: [{peer: site-b}, {peer: site-c, exportName: pg, exportNamespace: data}]
  lbScheme: static
"""
)
POLICY = (
    HEAD
    + """kind: AccessPolicy
metadata: {name: allow-prod}
spec:
  action: allow
  from:
  - workloadSelector:
      matchLabels: {client.clusterlink.net/namespace: prod}
      matchExpressions:
      - {key: peer.clusterlink.net/name, operator: In, values: [site-a, site-b]}
      - {key: client.clusterlink.net/labels.app, operator: Exists}
  to: [{workloadSelector: {}}]
"""
)
PRIVILEGED = (
    HEAD
    + """kind: PrivilegedAccessPolicy
metadata: {name: deny-guests, namespace: whatever}
spec:
  action: deny
  from: [{workloadSelector: {matchExpressions: [{key: role, operator: NotIn, values: [x]}]}}]
  to: [{workloadSelector: {matchExpressions: [{key: secret, operator: DoesNotExist}]}}]
"""
)
ALL_KINDS = [PEER, EXPORT, IMPORT, POLICY, PRIVILEGED]


def one(text: str):
    (resource,) = parse_documents(text)
    return resource


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ALL_KINDS, ids=lambda t: t.split("kind: ")[1].split()[0])
def test_every_kind_survives_dict_yaml_and_json_round_trips(text):
    resource = one(text)
    assert resource_from_dict(to_dict(resource)) == resource
    assert parse_documents(dump_yaml([resource])) == [resource]
    assert parse_documents(dump_json(resource)) == [resource]
    assert parse_documents(dump_json([resource, resource])) == [resource, resource]


def test_kinds_map_to_their_models():
    assert [type(r) for r in parse_documents("---\n".join(ALL_KINDS))] == [
        Peer,
        Export,
        Import,
        AccessPolicy,
        PrivilegedAccessPolicy,
    ]


def test_output_keys_are_in_wire_order_camel_case_without_nulls():
    data = to_dict(one(IMPORT + "status: {listen: '127.0.0.1:4000'}\n"))
    assert list(data) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert list(data["spec"]) == ["port", "sources", "lbScheme"]
    assert data["status"] == {"listen": "127.0.0.1:4000", "sources": [], "conditions": []}
    assert "status" not in to_dict(one(IMPORT), include_status=True)


def test_status_can_be_left_out_of_the_output():
    resource = one(PEER + "status: {reachable: true, rttMs: 0.4}\n")
    assert to_dict(resource)["status"] == {
        "conditions": [],
        "reachable": True,
        "labels": {},
        "rttMs": 0.4,
    }
    assert "status" not in to_dict(resource, include_status=False)


def test_policy_from_is_from_on_the_wire_and_from__in_python():
    policy = one(POLICY)
    assert isinstance(policy, AccessPolicy)
    assert policy.spec.from_[0].workload_selector.match_labels == {
        "client.clusterlink.net/namespace": "prod"
    }
    assert "from" in to_dict(policy)["spec"]
    assert "from_" not in dump_json(policy)


def test_import_sources_default_to_the_imports_own_name_and_namespace():
    sources = to_dict(one(IMPORT))["spec"]["sources"]
    assert sources == [
        {"peer": "site-b", "exportName": "db", "exportNamespace": "prod"},
        {"peer": "site-c", "exportName": "pg", "exportNamespace": "data"},
    ]


def test_defaults_are_written_out():
    imp = one(HEAD + "kind: Import\nmetadata: {name: x}\nspec: {port: 80, sources: [{peer: b}]}")
    assert imp.metadata.namespace == "default"
    assert to_dict(imp)["spec"]["lbScheme"] == "round-robin"
    assert to_dict(imp)["spec"]["sources"][0]["exportNamespace"] == "default"


def test_cluster_scoped_kinds_drop_a_given_namespace_and_never_print_one():
    for resource in (one(PEER.replace("site-b,", "site-b, namespace: x,")), one(PRIVILEGED)):
        assert resource.metadata.namespace == ""
        assert "namespace" not in to_dict(resource)["metadata"]


def test_status_of_another_gateways_output_is_accepted_on_input():
    text = dump_yaml([with_status(one(PEER), {"reachable": False, "reason": "timeout"})])
    assert one(text).status is not None


def test_with_status_validates_the_status_for_the_kind():
    peer = one(PEER)
    assert with_status(peer, {"lastSeen": "2024-05-01T10:00:00Z"}).status.last_seen is not None
    assert with_status(peer, None).status is None
    with pytest.raises(ValidationError) as caught:
        with_status(peer, {"reachable": "maybe"})
    assert caught.value.field == "status.reachable"
    with pytest.raises(ValidationError) as caught:
        with_status(one(EXPORT), {"listen": "x"})
    assert caught.value.field == "status.listen"


# --- input forms -------------------------------------------------------------------------------


def test_multi_document_yaml_skips_empty_documents():
    text = f"---\n{PEER}---\n---\n# only a comment\n---\n{EXPORT}---\n"
    assert [type(r) for r in parse_documents(text)] == [Peer, Export]


def test_no_documents_is_an_empty_list():
    assert parse_documents("") == []
    assert parse_documents("---\n# nothing\n") == []


@pytest.mark.parametrize(
    "shape",
    [
        json.dumps,
        lambda docs: json.dumps({"items": docs}),
        lambda docs: json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent="\t"),
        lambda docs: yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs}),
    ],
    ids=["json-array", "items", "kind-list-tab-indented-json", "kind-list-yaml"],
)
def test_lists_are_accepted(shape):
    docs = [to_dict(one(PEER)), to_dict(one(EXPORT))]
    assert [to_dict(r) for r in parse_documents(shape(docs))] == docs


def test_tab_indented_json_is_accepted():
    doc = to_dict(one(EXPORT))
    assert [to_dict(r) for r in parse_documents(json.dumps(doc, indent="\t"))] == [doc]


def test_python_attribute_names_are_not_wire_names():
    with pytest.raises(ValidationError) as caught:
        parse_documents(IMPORT.replace("lbScheme", "lb_scheme"))
    assert caught.value.field == "spec.lb_scheme"
    assert "unknown field" in str(caught.value)


# --- errors ------------------------------------------------------------------------------------

IMPORT_BAD = HEAD + "kind: Import\nmetadata: {name: bad}\nspec: {port: 80, sources: [{peer: b}]}\n"
SELECTOR = HEAD + (
    "kind: AccessPolicy\nmetadata: {name: p}\n"
    "spec: {action: allow, from: [FROM], to: [{workloadSelector: {}}]}\n"
)


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def expression(text: str) -> str:
    return replace(SELECTOR, "FROM", f"{{workloadSelector: {{matchExpressions: [{text}]}}}}")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (replace(IMPORT_BAD, "port: 80", "port: 70000"), "spec.port", "must be at most 65535"),
        (replace(IMPORT_BAD, "port: 80", "port: -1"), "spec.port", "must be at least 0"),
        (replace(IMPORT_BAD, "port: 80", "port: http"), "spec.port", "must be an integer"),
        (replace(IMPORT_BAD, ", sources: [{peer: b}]", ""), "spec.sources", "required"),
        (replace(IMPORT_BAD, "[{peer: b}]", "[]"), "spec.sources", "must not be empty"),
        (replace(IMPORT_BAD, "{peer: b}", "{peer: b}, {peer: B!}"), "spec.sources[1].peer", "DNS"),
        (replace(IMPORT_BAD, "{peer: b}", "{exportName: x}"), "spec.sources[0].peer", "required"),
        (
            replace(IMPORT_BAD, "}]}", "}], lbScheme: fastest}"),
            "spec.lbScheme",
            "must be 'round-robin', 'random' or 'static' (got 'fastest')",
        ),
        (replace(IMPORT_BAD, "port: 80", "port: 80, prot: 1"), "spec.prot", "unknown field"),
        (replace(IMPORT_BAD, "name: bad", "name: Bad_Name"), "metadata.name", "DNS name"),
        (replace(IMPORT_BAD, "{name: bad}", "{}"), "metadata.name", "required"),
        (replace(IMPORT_BAD, "{name: bad}", "{name: x, uid: 1}"), "metadata.uid", "unknown"),
        (replace(IMPORT_BAD, "spec: ", "spec: 3\nx: "), "spec", "must be a mapping"),
        (replace(EXPORT, "db.prod.svc", "''"), "spec.host", "must not be empty"),
        (replace(EXPORT, "db.prod.svc", "'db prod'"), "spec.host", "an IP address or a DNS host"),
        (replace(EXPORT, "db.prod.svc", '"db\\0prod"'), "spec.host", "an IP address or a DNS"),
        (replace(EXPORT, "db.prod.svc", "'http://db'"), "spec.host", "an IP address or a DNS"),
        (replace(EXPORT, "db.prod.svc", "'[::1]'"), "spec.host", "without brackets"),
        (replace(EXPORT, "db.prod.svc", "a..b"), "spec.host", "an IP address or a DNS host"),
        (replace(PEER, "10.0.0.2", "'10.0.0.2:443'"), "spec.gateways[1].host", "an IP address"),
        (replace(EXPORT, "5432", "-1"), "spec.port", "must be at least 0"),
        (
            replace(PEER, "[{host: b.example.com, port: 8443}, {host: 10.0.0.2, port: 443}]", "[]"),
            "spec.gateways",
            "must not be empty: a Peer needs at least one gateway, unless it dials in",
        ),
        (replace(PEER, "port: 443", "port: 65536"), "spec.gateways[1].port", "at most 65535"),
        (replace(PEER, "site-b", "x" * 64), "metadata.name", "at most 63 characters each"),
        (
            replace(
                SELECTOR, "FROM", "{workloadSelector: {matchExpressions: [{key: a, operator: Is}]}}"
            ),
            "spec.from[0].workloadSelector.matchExpressions[0].operator",
            "'In', 'NotIn', 'Exists' or 'DoesNotExist'",
        ),
        (
            replace(
                SELECTOR, "FROM", "{workloadSelector: {matchExpressions: [{key: a, operator: In}]}}"
            ),
            "spec.from[0].workloadSelector.matchExpressions[0].values",
            "operator In needs at least one value",
        ),
        (
            expression("{key: a, operator: Exists, values: [x]}"),
            "spec.from[0].workloadSelector.matchExpressions[0].values",
            "operator Exists takes no values",
        ),
        (
            replace(SELECTOR, "FROM", "{workloadSets: [frontend]}"),
            "spec.from[0].workloadSets",
            "not supported; use workloadSelector",
        ),
        (replace(SELECTOR, "FROM", "{}"), "spec.from[0].workloadSelector", "required"),
        (replace(SELECTOR, "[FROM]", "[]"), "spec.from", "must not be empty"),
        (replace(SELECTOR, "allow", "permit"), "spec.action", "must be 'allow' or 'deny'"),
        (
            replace(SELECTOR, "FROM", "{workloadSelector: {matchLabels: {'bad key': x}}}"),
            "spec.from[0].workloadSelector.matchLabels",
            "label key 'bad key'",
        ),
        (
            replace(IMPORT_BAD, "clusterlink.net/v1alpha1", "v1"),
            "apiVersion",
            "must be 'clusterlink.net/v1alpha1' (got 'v1')",
        ),
        (replace(IMPORT_BAD, HEAD, ""), "apiVersion", "required"),
        (replace(IMPORT_BAD, "kind: Import", "kind: Service"), "kind", "unknown kind 'Service'"),
        (replace(IMPORT_BAD, "kind: Import", "kind: import"), "kind", "accepted kinds: Peer,"),
        (replace(IMPORT_BAD, "kind: Import\n", ""), "kind", "required"),
    ],
)
def test_invalid_documents_name_the_field(text, field, words):
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    message = str(caught.value)
    assert caught.value.field == field
    assert f": {field}: " in message
    assert words in message
    assert message.startswith("document 1")
    assert "\n" not in message
    for noise in ("pydantic", "https://", "Input should", "Value error", "type="):
        assert noise not in message


def test_the_message_names_the_document_and_resource():
    text = f"{EXPORT}---\n{replace(IMPORT_BAD, 'port: 80', 'port: 70000')}"
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    assert str(caught.value) == (
        "document 2 (Import default/bad): spec.port: must be at most 65535 (got 70000)"
    )


def test_list_items_are_named_in_errors():
    bad = to_dict(one(EXPORT)) | {"spec": {"host": "h", "port": 70000}}
    with pytest.raises(ValidationError, match=r"^item 2 \(Export prod/db\): spec.port"):
        parse_documents(json.dumps({"items": [to_dict(one(PEER)), bad]}))


def test_yaml_syntax_errors_give_the_line():
    with pytest.raises(ValidationError) as caught:
        parse_documents(PEER + "---\nkind: Peer\nmetadata: {name: x\nspec: 1\n")
    assert caught.value.field is None
    assert str(caught.value).startswith("invalid YAML at line 9, column 5: ")
    assert "\n" not in str(caught.value)


def test_json_syntax_errors_give_the_line():
    with pytest.raises(ValidationError, match=r"^invalid JSON at line 2, column \d+: "):
        parse_documents('{"kind": "Peer",\n "metadata": {"name": "x"}')


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("just a string", "got str"),
        ("- 1\n- 2", "item 1: expected a mapping"),
        ("kind: List\nitems: 3", "items: must be a list"),
    ],
)
def test_documents_that_are_not_resources_are_refused(text, words):
    with pytest.raises(ValidationError, match=words):
        parse_documents(text)


def test_a_bad_document_fails_the_whole_batch():
    text = "---\n".join([PEER, EXPORT, replace(EXPORT, "name: db", "name: DB"), IMPORT])
    with pytest.raises(ValidationError, match=r"^document 3 \(Export prod/DB\): metadata.name"):
        parse_documents(text)


def test_resource_from_dict_names_the_resource_without_a_document_number():
    data = to_dict(one(EXPORT)) | {"spec": {"host": "h", "port": 99999}}
    with pytest.raises(ValidationError) as caught:
        resource_from_dict(data)
    assert str(caught.value).startswith("Export prod/db: spec.port: must be at most 65535")


@pytest.mark.parametrize(
    "host",
    ["db.prod.svc", "localhost", "my_service", "10.0.0.2", "::1", "fe80::1%eth0", "db.svc."],
)
def test_hosts_a_gateway_can_connect_to_are_accepted(host):
    export = resource_from_dict(to_dict(one(EXPORT)) | {"spec": {"host": host, "port": 80}})
    assert isinstance(export, Export)
    assert export.spec.host == host


def test_a_host_with_a_nul_byte_is_refused():
    data = to_dict(one(EXPORT)) | {"spec": {"host": "db\x00prod", "port": 80}}
    with pytest.raises(ValidationError, match="an IP address or a DNS host name"):
        resource_from_dict(data)


# --- policy selector keys ----------------------------------------------------------------------

TO = "to: [{workloadSelector: {}}]"


def labels_to(text: str) -> str:
    """A policy whose second ``to`` selector is ``text`` (its ``from`` matches everything)."""
    anything = replace(SELECTOR, "FROM", "{workloadSelector: {}}")
    return replace(anything, TO, f"to: [{{workloadSelector: {{}}}}, {text}]")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (
            replace(
                SELECTOR,
                "FROM",
                "{workloadSelector: {matchLabels: {peer.clusterlink.net/nmae: a}}}",
            ),
            "spec.from[0].workloadSelector.matchLabels",
            "'peer.clusterlink.net/nmae' is not a ClusterLink attribute (known source attributes: "
            "peer.clusterlink.net/name, peer.clusterlink.net/labels.<k>, "
            "client.clusterlink.net/namespace, client.clusterlink.net/service-account, "
            "client.clusterlink.net/labels.<k>, client.clusterlink.net/ip)",
        ),
        (
            replace(
                SELECTOR,
                "FROM",
                "{workloadSelector: {matchLabels: {export.clusterlink.net/name: web}}}",
            ),
            "spec.from[0].workloadSelector.matchLabels",
            "'export.clusterlink.net/name' is a destination attribute, not a source one",
        ),
        (
            labels_to(
                "{workloadSelector: {matchLabels: {app: x, client.clusterlink.net/ip: 10.0.0.1}}}"
            ),
            "spec.to[1].workloadSelector.matchLabels",
            "'client.clusterlink.net/ip' is a source attribute, not a destination one (known "
            "destination attributes: peer.clusterlink.net/name, peer.clusterlink.net/labels.<k>, "
            "export.clusterlink.net/name, export.clusterlink.net/namespace, "
            "export.clusterlink.net/labels.<k>)",
        ),
        (
            expression(
                "{key: app, operator: Exists}, "
                "{key: client.clusterlink.net/labels, operator: In, values: [x]}"
            ),
            "spec.from[0].workloadSelector.matchExpressions[1].key",
            "'client.clusterlink.net/labels' is not a ClusterLink attribute",
        ),
        (
            labels_to(
                "{workloadSelector: {matchExpressions: "
                "[{key: client.clusterlink.net/labels.app, operator: DoesNotExist}]}}"
            ),
            "spec.to[1].workloadSelector.matchExpressions[0].key",
            "'client.clusterlink.net/labels.app' is a source attribute, not a destination one",
        ),
        (
            replace(
                SELECTOR, "FROM", "{workloadSelector: {matchLabels: {x.clusterlink.net/app: a}}}"
            ),
            "spec.from[0].workloadSelector.matchLabels",
            "'x.clusterlink.net/app' is not a ClusterLink attribute",
        ),
        (
            replace(
                replace(SELECTOR, "kind: AccessPolicy", "kind: PrivilegedAccessPolicy"),
                "FROM",
                "{workloadSelector: {matchLabels: {export.clusterlink.net/namespace: a}}}",
            ),
            "spec.from[0].workloadSelector.matchLabels",
            "'export.clusterlink.net/namespace' is a destination attribute, not a source one",
        ),
    ],
    ids=[
        "misspelt-source-key",
        "destination-key-in-from",
        "source-key-in-to",
        "label-prefix-without-label",
        "source-label-in-to-expression",
        "unknown-clusterlink-domain",
        "privileged-policy",
    ],
)
def test_selector_keys_must_be_attributes_of_their_side(text, field, words):
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)

    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith("document 1 (") and f"): {field}: {words}" in message
    assert "\n" not in message and "(got " not in message


def test_attributes_of_their_own_side_and_user_keys_are_accepted():
    text = replace(
        replace(
            SELECTOR,
            "FROM",
            "{workloadSelector: {matchLabels: {peer.clusterlink.net/labels.region: eu, "
            "client.clusterlink.net/service-account: web, app: shop}}}",
        ),
        TO,
        "to: [{workloadSelector: {matchLabels: {peer.clusterlink.net/name: b}, "
        "matchExpressions: [{key: export.clusterlink.net/labels.tier, operator: Exists}, "
        "{key: example.com/team, operator: NotIn, values: [x]}]}}]",
    )

    (policy,) = parse_documents(text)

    assert isinstance(policy, AccessPolicy)


def test_an_export_may_leave_host_and_port_to_its_kubernetes_service():
    """The original's form: no host means the Service of the Export's name (Kubernetes mode;
    a standalone gateway refuses it when applied, see test_resources_apply)."""
    export = one(HEAD + "kind: Export\nmetadata: {name: db, namespace: prod}\nspec: {}\n")
    assert (export.spec.host, export.spec.port) == (None, 0)
    assert to_dict(export)["spec"] == {}


def test_an_import_name_is_at_most_63_characters():
    """It names a Kubernetes Service (a DNS label), as in the original."""
    with pytest.raises(ValidationError) as caught:
        one(replace(IMPORT, "name: db,", f"name: {'i' * 64},"))
    assert caught.value.field == "metadata"
    assert "import name cannot exceed 63 characters" in str(caught.value)
    assert one(replace(IMPORT, "name: db,", f"name: {'i' * 63},")).metadata.name == "i" * 63


def test_an_import_target_port_is_printed_only_when_set():
    assert "targetPort" not in to_dict(one(IMPORT))["spec"]
    with_target = one(replace(IMPORT, "port: 0", "port: 0\n  targetPort: 5000"))
    assert to_dict(with_target)["spec"]["targetPort"] == 5000
    assert with_target.spec.listen_port == 5000
