"""``describe`` and ``-o yaml`` print PyYAML's text without importing PyYAML when they can."""

import copy
import sys
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterlink.cli.block_yaml import dump_yaml

# Strings PyYAML writes plain, quotes, or folds: words it reads as booleans or null, numbers,
# dates, addresses, indicators, blanks at either end, long lines.
TRICKY = [
    "yes", "No", "TRUE", "off", "null", "Null", "~", "y", "n", "",
    "2026-11-25T19:00:00Z", "2026-11-25T19:00:00.5Z", "2026-11-25", "2026-11-25 19:00:00",
    "127.0.0.1", "127.0.0.1:8443", "0.0.0.0:0", "::1", "[::1]:8443", "1.5", "1e3", "0x1F",
    "12:30", "-1", "+1", "1_000", ".inf", ".nan", "---", "...", "a: b", "a #b", "a:", " a",
    "a ", "- a", "@x", "%x", "!x", "&x", "*x", "|", ">", "'a'", '"a"', "a'b", "é", "a\nb",
    "peer.clusterlink.net/name", "round-robin", "default deny", "x" * 130,
    "source x: no Peer named x", "5 heartbeats failed " * 5,
]  # fmt: skip
ALPHABET = "aZ09 _./:@+=,;()-#'\"{}[]&*!|>%`?~\té\n"

strings = st.one_of(st.sampled_from(TRICKY), st.text(alphabet=ALPHABET, max_size=12))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), strings)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=20,
)


def pyyaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


@settings(max_examples=400)
@given(documents)
def test_the_text_is_pyyamls_whatever_the_document(data: object) -> None:
    assert dump_yaml(data) == pyyaml(data)


def test_a_mapping_met_twice_is_written_as_pyyaml_writes_it() -> None:
    shared = {"k": "v"}
    data = {"a": shared, "b": [shared], "c": []}

    assert dump_yaml(data) == pyyaml(data)


IMPORT: dict[str, Any] = {
    "apiVersion": "clusterlink.net/v1alpha1",
    "kind": "Import",
    "metadata": {"name": "echo", "namespace": "default", "labels": {}},
    "spec": {
        "port": 0,
        "sources": [{"peer": "b", "exportName": "echo", "exportNamespace": "default"}],
        "lbScheme": "round-robin",
    },
    "status": {
        "listen": "127.0.0.1:40111",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Listening"}],
    },
}
PEER_STATUS: dict[str, Any] = {
    "reachable": True,
    "lastSeen": "2026-11-25T19:00:00.123Z",
    "rttMs": 0.84,
    "reason": None,
    "labels": {"site": "b"},
}


@pytest.mark.parametrize(
    "data", [IMPORT, PEER_STATUS, {"items": [IMPORT, copy.deepcopy(IMPORT)]}], ids=repr
)
def test_stored_documents_need_no_yaml_library(
    data: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = pyyaml(data)
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now fails

    assert dump_yaml(data) == expected
